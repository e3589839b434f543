// nextword playground: suggestions while typing, an explain view and streamed generation, all
// through the server's public API (/v1/models, /v1/next_words, /v1/explain, /v1/completions).
// No dependencies; the page talks to this server only.
(function () {
  "use strict";

  // ---- strings -------------------------------------------------------------------------------

  const STRINGS = {
    en: {
      title: "nextword playground",
      language: "Language",
      loading: "Connecting to the server…",
      keyTitle: "API key",
      keyNeeded: "This server needs an API key.",
      keyLabel: "API key",
      keyUse: "Use this key",
      keyForget: "Forget the key",
      keyStorage: "The key is kept in this browser tab only (sessionStorage) and sent with every API call.",
      keyEmpty: "Enter the key first.",
      keyRejected: "The server rejected this key. Check it and try again.",
      keyExpired: "The server no longer accepts the key; enter it again.",
      model: "Model {name} · backend {backend} · context {ctx} tokens",
      textLabel: "Your text",
      placeholder: "Start typing, e.g. I love cats because",
      views: "Views",
      tabSuggest: "Suggest",
      tabExplain: "Explain",
      tabGenerate: "Generate",
      suggestCount: "Suggestions",
      completeLabel: "Last word",
      completeTyping: "complete it while typing",
      completeAuto: "the model decides",
      completeWord: "always complete it",
      completeNext: "never: next words",
      suggestHelp: "Tab or a click accepts, ↑ ↓ choose, Esc dismisses.",
      suggestionsLabel: "Suggestions",
      suggestEmpty: "Type something to see what the model expects next.",
      suggestLoading: "Predicting…",
      suggestDismissed: "Dismissed. Keep typing for new suggestions.",
      completing: "Completing “{typed}”: the rest of the word to type",
      nextWords: "The next word",
      wordEnds: "✓ ends here",
      noCandidates: "The model has no suggestion here.",
      explainUnit: "Show",
      unitTokens: "tokens",
      unitWords: "words",
      colourBy: "Colour by",
      byProb: "probability",
      byRank: "rank",
      legendProb: "Red: unlikely (0.01% or less) · yellow: 1% · green: certain · grey: not predicted (the first token).",
      legendRank: "Green: the model's first choice · yellow: in its top 10 · orange: top 100 · red: below.",
      explainEmpty: "Type something to explain it.",
      explainLoading: "Scoring every token…",
      explainSummary: "{n} tokens scored · {bits} bits · perplexity {ppl}",
      notPredicted: "first token: not predicted",
      prob: "probability",
      rank: "rank",
      bits: "bits",
      alternatives: "most likely here",
      tokensInWord: "tokens",
      completionTitle: "Completions of “{typed}”",
      maxTokens: "Max new tokens",
      temperature: "Temperature (0 = greedy)",
      topK: "Top-k (0 = off)",
      topP: "Top-p (1 = off)",
      noRepeat: "No-repeat n-gram size (0 = off)",
      seed: "Seed (empty = random)",
      samplingNote: "Top-k and top-p apply when the temperature is above 0.",
      generate: "Generate",
      stop: "Stop",
      showProbs: "Show probabilities",
      append: "Append to my text",
      genEmpty: "Type a prompt first.",
      genRunning: "Generating…",
      genDone: "Done: {n} tokens (finish reason: {reason}).",
      genStopped: "Stopped.",
      genProbsHint: "Hover or focus a token to see its probability and the alternatives.",
      badNumber: "{field}: enter a number (min {min}{max}).",
      unreachable: "The server cannot be reached.",
      error: "Error: {message}",
    },
    ko: {
      title: "nextword 플레이그라운드",
      language: "언어",
      loading: "서버에 연결하는 중…",
      keyTitle: "API 키",
      keyNeeded: "이 서버는 API 키가 필요합니다.",
      keyLabel: "API 키",
      keyUse: "이 키 사용",
      keyForget: "키 지우기",
      keyStorage: "키는 이 브라우저 탭에만(sessionStorage) 보관되며 모든 API 호출에 함께 전송됩니다.",
      keyEmpty: "먼저 키를 입력하세요.",
      keyRejected: "서버가 이 키를 거부했습니다. 확인 후 다시 입력하세요.",
      keyExpired: "서버가 더 이상 이 키를 받지 않습니다. 다시 입력하세요.",
      model: "모델 {name} · 백엔드 {backend} · 문맥 {ctx} 토큰",
      textLabel: "텍스트",
      placeholder: "입력해 보세요. 예: 나는 고양이를 좋아한다. 왜냐하면",
      views: "보기",
      tabSuggest: "제안",
      tabExplain: "설명",
      tabGenerate: "생성",
      suggestCount: "제안 수",
      completeLabel: "마지막 단어",
      completeTyping: "입력 중이면 완성",
      completeAuto: "모델이 판단",
      completeWord: "항상 완성",
      completeNext: "완성 안 함: 다음 단어",
      suggestHelp: "Tab 또는 클릭으로 받아들이고, ↑ ↓로 고르고, Esc로 닫습니다.",
      suggestionsLabel: "제안",
      suggestEmpty: "무언가 입력하면 모델이 다음에 올 말을 보여 줍니다.",
      suggestLoading: "예측하는 중…",
      suggestDismissed: "닫았습니다. 계속 입력하면 새 제안이 나옵니다.",
      completing: "“{typed}” 완성: 더 입력할 나머지 글자",
      nextWords: "다음 단어",
      wordEnds: "✓ 여기서 끝",
      noCandidates: "여기서는 모델의 제안이 없습니다.",
      explainUnit: "단위",
      unitTokens: "토큰",
      unitWords: "단어",
      colourBy: "색 기준",
      byProb: "확률",
      byRank: "순위",
      legendProb: "빨강: 가능성 낮음(0.01% 이하) · 노랑: 1% · 초록: 확실 · 회색: 예측 안 함(첫 토큰).",
      legendRank: "초록: 모델의 1순위 · 노랑: 상위 10 · 주황: 상위 100 · 빨강: 그 밖.",
      explainEmpty: "설명할 텍스트를 입력하세요.",
      explainLoading: "모든 토큰의 확률을 계산하는 중…",
      explainSummary: "토큰 {n}개 계산 · {bits}비트 · 퍼플렉서티 {ppl}",
      notPredicted: "첫 토큰: 예측하지 않음",
      prob: "확률",
      rank: "순위",
      bits: "비트",
      alternatives: "이 자리의 유력 후보",
      tokensInWord: "토큰",
      completionTitle: "“{typed}”의 완성 후보",
      maxTokens: "최대 새 토큰 수",
      temperature: "온도 (0 = 탐욕적)",
      topK: "Top-k (0 = 끔)",
      topP: "Top-p (1 = 끔)",
      noRepeat: "반복 금지 n-gram 크기 (0 = 끔)",
      seed: "시드 (비우면 무작위)",
      samplingNote: "Top-k와 top-p는 온도가 0보다 클 때 적용됩니다.",
      generate: "생성",
      stop: "중지",
      showProbs: "확률 보기",
      append: "내 텍스트에 덧붙이기",
      genEmpty: "먼저 프롬프트를 입력하세요.",
      genRunning: "생성하는 중…",
      genDone: "완료: 토큰 {n}개 (종료 이유: {reason}).",
      genStopped: "중지했습니다.",
      genProbsHint: "토큰에 마우스를 올리거나 포커스하면 확률과 다른 후보가 보입니다.",
      badNumber: "{field}: 숫자를 입력하세요 (최소 {min}{max}).",
      unreachable: "서버에 연결할 수 없습니다.",
      error: "오류: {message}",
    },
  };

  const LANG_KEY = "nextword.playground.lang";
  const API_KEY = "nextword.playground.apiKey";

  function pickLanguage() {
    const chosen = sessionStorage.getItem(LANG_KEY);
    if (chosen && STRINGS[chosen]) return chosen;
    const wanted = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"]);
    for (const tag of wanted) {
      const base = String(tag).toLowerCase().split("-")[0];
      if (STRINGS[base]) return base;
    }
    return "en";
  }

  let lang = pickLanguage();

  /** The page string `name` in the current language, with `{field}` replaced from `values`. */
  function t(name, values) {
    const text = (STRINGS[lang] && STRINGS[lang][name]) || STRINGS.en[name] || name;
    return text.replace(/\{(\w+)\}/g, (_, field) => (values && field in values ? String(values[field]) : ""));
  }

  function applyLanguage() {
    document.documentElement.lang = lang;
    document.title = t("title");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
    for (const el of document.querySelectorAll("[data-i18n-aria-label]")) el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
    $("lang").value = lang;
    if (modelInfo) showModel(modelInfo);
    renderSuggestions();
    renderExplanation();
    renderLegend();
  }

  // ---- helpers -------------------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** A probability as people read it: "41.27%", or "3.2e-5" below 0.01%. */
  function pct(p) {
    if (p === null || p === undefined) return "-";
    return p >= 0.0001 ? (p * 100).toFixed(2) + "%" : p.toExponential(1);
  }

  /** A token's text made visible: newlines and tabs as symbols, the rest as is. */
  function visible(text) {
    return text.replace(/\n/g, "↵").replace(/\t/g, "⇥");
  }

  /** Background for a probability: red (1e-4 or less) through yellow (1%) to green (1), log scale. */
  function probColour(p) {
    if (p === null || p === undefined) return "hsl(0, 0%, 82%)";
    const x = p >= 1 ? 1 : p > 0 ? Math.max(0, (Math.log10(p) + 4) / 4) : 0;
    return "hsl(" + Math.round(120 * x) + ", 75%, 72%)";
  }

  /** Background for a rank: 1 green, top 10 yellow, top 100 orange, below red. */
  function rankColour(rank) {
    if (rank === null || rank === undefined) return "hsl(0, 0%, 82%)";
    if (rank === 1) return "hsl(120, 60%, 70%)";
    if (rank <= 10) return "hsl(55, 85%, 68%)";
    if (rank <= 100) return "hsl(30, 90%, 70%)";
    return "hsl(0, 75%, 72%)";
  }

  function showError(message) {
    $("error").textContent = message ? t("error", { message }) : "";
  }

  // ---- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function headers(json) {
    const out = {};
    if (json) out["Content-Type"] = "application/json";
    const key = sessionStorage.getItem(API_KEY);
    if (key) out.Authorization = "Bearer " + key;
    return out;
  }

  async function failure(response) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (e) {
      // not JSON: keep the status line
    }
    return new ApiError(response.status, message);
  }

  /** One API call; resolves to the raw Response (ok) or rejects with an ApiError. */
  async function request(method, path, body, signal) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      throw new ApiError(0, t("unreachable"));
    }
    if (!response.ok) throw await failure(response);
    return response;
  }

  async function post(path, body, signal) {
    return (await request("POST", path, body, signal)).json();
  }

  /** What every view does with a failed call: ignore aborts, ask for the key on 401, show the rest. */
  function handleFailure(err) {
    if (err && err.name === "AbortError") return;
    if (err instanceof ApiError && err.status === 401) {
      sessionStorage.removeItem(API_KEY);
      askForKey(t("keyExpired"));
      return;
    }
    showError(err && err.message ? err.message : String(err));
  }

  // ---- suggestions ---------------------------------------------------------------------------

  /**
   * Where suggestions come from. Today: POST /v1/next_words for the text before the caret. A
   * faster source (a typing session kept open on the server) can replace `fetch` as long as it
   * takes (text, k, complete, AbortSignal) and resolves to {typed, candidates: [{text, remaining, prob}]}.
   */
  const suggestionSource = {
    async fetch(text, k, complete, signal) {
      const data = await post("/v1/next_words", { prompt: text, k, complete }, signal);
      return {
        typed: data.typed === undefined ? null : data.typed,
        candidates: data.candidates.map((c) => ({
          text: c.text,
          remaining: c.remaining === undefined ? null : c.remaining,
          prob: c.prob,
        })),
      };
    },
  };

  const suggest = {
    controller: null,
    seq: 0, // the keystroke (or other change) the latest request is for
    prompt: "", // the text the shown suggestions are for
    result: null,
    state: "idle", // idle | loading | ready | dismissed | empty
    selected: 0,
  };

  function textBeforeCaret() {
    const area = $("text");
    return area.value.slice(0, area.selectionEnd);
  }

  /**
   * How the last word is read (the `complete` field of /v1/next_words). "typing", the default,
   * completes the word while the caret follows a letter, a digit or a space (a space heals into
   * the next word, so the suggestions are whole next words), and lets the model decide ("auto")
   * after punctuation; the other choices are sent as they are.
   */
  function completeMode(text) {
    const chosen = $("complete").value;
    if (chosen !== "typing") return chosen;
    return /[\p{L}\p{N}\p{M}\s]$/u.test(text) ? "word" : "auto";
  }

  function suggestCount() {
    const k = Number.parseInt($("k").value, 10);
    return Number.isFinite(k) ? Math.min(20, Math.max(1, k)) : 5;
  }

  /** Ask for suggestions for the text now before the caret; the previous request, if still out, is aborted. */
  function requestSuggestions(seq) {
    if (suggest.controller) suggest.controller.abort();
    suggest.controller = null;
    if (activeTab !== "suggest") return;
    const text = textBeforeCaret();
    suggest.seq = seq;
    if (!text) {
      suggest.result = null;
      suggest.prompt = "";
      suggest.state = "empty";
      renderSuggestions();
      return;
    }
    const controller = new AbortController();
    suggest.controller = controller;
    if (suggest.state !== "ready") {
      suggest.state = "loading";
      renderSuggestions();
    }
    const complete = completeMode(text);
    suggestionSource
      .fetch(text, suggestCount(), complete, controller.signal)
      .then((result) => {
        if (controller.signal.aborted) return;
        suggest.controller = null;
        suggest.result = result;
        suggest.complete = complete;
        suggest.prompt = text;
        suggest.state = "ready";
        suggest.selected = 0;
        showError("");
        renderSuggestions();
        markPainted(seq, text, complete);
      })
      .catch((err) => {
        if (controller.signal.aborted) return;
        suggest.controller = null;
        suggest.state = "idle";
        renderSuggestions();
        handleFailure(err);
      });
  }

  /** Performance marks: keystroke `seq` -> its suggestions in the DOM and painted. */
  function markPainted(seq, text, complete) {
    requestAnimationFrame(() =>
      setTimeout(() => {
        const start = "nw-key-" + seq;
        if (performance.getEntriesByName(start, "mark").length === 0) return;
        const measure = performance.measure("nw-suggest", start);
        // this keystroke's mark and those of the keystrokes it overtook are done with
        for (const mark of performance.getEntriesByType("mark")) {
          if (mark.name.startsWith("nw-key-") && Number(mark.name.slice(7)) <= seq) performance.clearMarks(mark.name);
        }
        const painted = window.nextwordPlayground.painted;
        painted.push({ seq, text, complete, ms: measure ? measure.duration : null });
        if (painted.length > 2000) painted.splice(0, painted.length - 1000);
      }, 0)
    );
  }

  function renderSuggestions() {
    const list = $("suggestions");
    const heading = $("suggest-heading");
    const area = $("text");
    list.replaceChildren();
    list.dataset.state = suggest.state;
    list.dataset.prompt = suggest.prompt;
    list.dataset.complete = suggest.complete || "";
    area.removeAttribute("aria-activedescendant");
    area.setAttribute("aria-expanded", "false");
    if (suggest.state === "empty") {
      heading.textContent = t("suggestEmpty");
      return;
    }
    if (suggest.state === "dismissed") {
      heading.textContent = t("suggestDismissed");
      return;
    }
    if (suggest.state === "loading" || !suggest.result) {
      heading.textContent = suggest.state === "loading" ? t("suggestLoading") : "";
      return;
    }
    const result = suggest.result;
    heading.textContent = result.typed && result.typed.trim() ? t("completing", { typed: result.typed.trim() }) : t("nextWords");
    if (result.candidates.length === 0) {
      heading.textContent = t("noCandidates");
      return;
    }
    area.setAttribute("aria-expanded", "true");
    result.candidates.forEach((c, i) => {
      const item = el("li", "suggestion");
      item.id = "suggestion-" + i;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(i === suggest.selected));
      item.dataset.index = String(i);
      item.dataset.text = c.text;
      item.dataset.prob = String(c.prob);
      item.dataset.remaining = c.remaining === null ? "" : c.remaining;
      const word = el("span", "word");
      const rest = c.remaining === null ? c.text : c.remaining;
      const typedPart = c.text.slice(0, c.text.length - rest.length);
      word.append(el("span", "typed", visible(typedPart.trimStart())), el("span", "rest", visible(typedPart ? rest : rest.trimStart())));
      if (c.remaining === "") word.append(el("span", "ends", t("wordEnds")));
      const bar = el("span", "bar");
      const fill = el("span", "fill");
      fill.style.width = Math.max(0.5, Math.min(100, c.prob * 100)).toFixed(2) + "%";
      bar.append(fill);
      item.append(word, bar, el("span", "pct", pct(c.prob)));
      item.addEventListener("mousedown", (e) => e.preventDefault()); // keep the caret in the text
      item.addEventListener("click", () => accept(i));
      list.append(item);
    });
    area.setAttribute("aria-activedescendant", "suggestion-" + suggest.selected);
  }

  function suggestionsShown() {
    return suggest.state === "ready" && suggest.result && suggest.result.candidates.length > 0 && activeTab === "suggest";
  }

  /** Insert what is left to type of suggestion `i` at the caret. */
  function accept(i) {
    const c = suggest.result && suggest.result.candidates[i];
    if (!c) return;
    const area = $("text");
    const end = area.selectionEnd;
    const before = area.value.slice(0, end);
    let insert = c.remaining === null ? c.text : c.remaining;
    if (/\s$/.test(before) && c.remaining === null) insert = insert.replace(/^[ \t]+/, "");
    area.focus();
    area.setRangeText(insert, end, end, "end");
    area.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function dismiss() {
    if (suggest.controller) suggest.controller.abort();
    suggest.controller = null;
    suggest.state = "dismissed";
    renderSuggestions();
  }

  // ---- explain -------------------------------------------------------------------------------

  const explainer = { controller: null, data: null, text: "", state: "idle" };

  function requestExplanation() {
    if (explainer.controller) explainer.controller.abort();
    explainer.controller = null;
    if (activeTab !== "explain") return;
    const text = $("text").value;
    if (!text) {
      explainer.data = null;
      explainer.text = "";
      explainer.state = "empty";
      renderExplanation();
      return;
    }
    if (text === explainer.text && explainer.state === "ready") return;
    const controller = new AbortController();
    explainer.controller = controller;
    explainer.state = "loading";
    renderExplanation();
    post("/v1/explain", { text, top: 5 }, controller.signal)
      .then((data) => {
        if (controller.signal.aborted) return;
        explainer.controller = null;
        explainer.data = data;
        explainer.text = text;
        explainer.state = "ready";
        showError("");
        renderExplanation();
      })
      .catch((err) => {
        if (controller.signal.aborted) return;
        explainer.controller = null;
        explainer.state = "idle";
        renderExplanation();
        handleFailure(err);
      });
  }

  function colourFor(item) {
    return $("explain-colour").value === "rank" ? rankColour(item.rank) : probColour(item.prob);
  }

  function renderLegend() {
    $("explain-legend").textContent = $("explain-colour").value === "rank" ? t("legendRank") : t("legendProb");
  }

  /** A token (or word) span with its tooltip: shown on hover and on keyboard focus. */
  function tokenSpan(text, colour, tipLines, alternatives) {
    const span = el("span", "tok");
    span.tabIndex = 0;
    span.style.background = colour;
    span.append(el("span", "t", text));
    const tip = el("span", "tip");
    tip.setAttribute("role", "tooltip");
    for (const line of tipLines) tip.append(el("span", "line", line));
    if (alternatives && alternatives.length) {
      tip.append(el("span", "line head", t("alternatives")));
      const table = el("table", "alts");
      for (const a of alternatives) {
        const row = el("tr");
        const word = el("td", "alt-text");
        word.append(el("code", "", JSON.stringify(a.text)));
        row.append(word, el("td", "num", pct(a.prob)));
        table.append(row);
      }
      tip.append(table);
    }
    span.append(tip);
    return span;
  }

  function renderExplanation() {
    const box = $("explain-text");
    const status = $("explain-status");
    const summary = $("explain-summary");
    const completion = $("explain-completion");
    box.replaceChildren();
    completion.replaceChildren();
    summary.textContent = "";
    box.dataset.state = explainer.state;
    box.dataset.text = explainer.text;
    status.textContent =
      explainer.state === "empty" ? t("explainEmpty") : explainer.state === "loading" ? t("explainLoading") : "";
    const data = explainer.data;
    if (!data || explainer.state !== "ready") return;
    const unit = $("explain-unit").value;
    box.dataset.unit = unit;
    if (unit === "words") {
      for (const w of data.words) {
        const lines = [
          JSON.stringify(w.text),
          w.prob === null ? t("notPredicted") : t("prob") + " " + pct(w.prob) + " · " + (w.surprisal_bits || 0).toFixed(2) + " " + t("bits"),
          t("tokensInWord") + ": " + data.tokens.slice(w.start, w.end).map((x) => JSON.stringify(x.text)).join(" "),
        ];
        const span = tokenSpan(w.text, probColour(w.prob), lines, null);
        span.classList.add("word");
        span.dataset.prob = w.prob === null ? "" : String(w.prob);
        box.append(span);
      }
    } else {
      for (const tok of data.tokens) {
        const lines =
          tok.prob === null
            ? [JSON.stringify(tok.text), t("notPredicted")]
            : [
                JSON.stringify(tok.text),
                t("prob") + " " + pct(tok.prob) + " · " + t("rank") + " " + tok.rank + " · " + tok.surprisal_bits.toFixed(2) + " " + t("bits"),
              ];
        const span = tokenSpan(tok.text, colourFor(tok), lines, tok.alternatives);
        span.dataset.tokenId = String(tok.token_id);
        span.dataset.prob = tok.prob === null ? "" : String(tok.prob);
        span.dataset.rank = tok.rank === null ? "" : String(tok.rank);
        box.append(span);
      }
    }
    const scored = data.tokens.filter((x) => x.prob !== null).length;
    summary.textContent = t("explainSummary", {
      n: scored,
      bits: (data.total_surprisal_bits || 0).toFixed(1),
      ppl: data.perplexity === null || data.perplexity === undefined ? "-" : Number(data.perplexity).toFixed(2),
    });
    if (data.completion && data.completion.candidates && data.completion.candidates.length) {
      completion.append(el("h3", "", t("completionTitle", { typed: (data.completion.typed || "").trim() })));
      const list = el("ul", "completion-list");
      for (const c of data.completion.candidates) {
        const item = el("li", "suggestion static");
        const word = el("span", "word");
        const rest = c.remaining || "";
        word.append(el("span", "typed", c.text.slice(0, c.text.length - rest.length).trimStart()), el("span", "rest", rest));
        const bar = el("span", "bar");
        const fill = el("span", "fill");
        fill.style.width = Math.max(0.5, Math.min(100, c.prob * 100)).toFixed(2) + "%";
        bar.append(fill);
        item.append(word, bar, el("span", "pct", pct(c.prob)));
        list.append(item);
      }
      completion.append(list);
    }
  }

  // ---- generate ------------------------------------------------------------------------------

  const gen = { controller: null, text: "", logprobs: null, prompt: "", state: "idle", finish: null, tokens: 0 };

  function numberField(id, { min, max, integer, optional }) {
    const input = $(id);
    const raw = input.value.trim();
    const label = input.parentElement.querySelector("span").textContent;
    if (raw === "" && optional) return null;
    const value = Number(raw);
    const ok = raw !== "" && Number.isFinite(value) && value >= min && (max === undefined || value <= max) && (!integer || Number.isInteger(value));
    if (!ok) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
      throw new Error(t("badNumber", { field: label, min, max: max === undefined ? "" : ", max " + max }));
    }
    input.removeAttribute("aria-invalid");
    return value;
  }

  /** The completion request for the form's settings (the same body any OpenAI client would send). */
  function completionBody(prompt) {
    const body = {
      prompt,
      max_tokens: numberField("gen-max", { min: 1, max: 4096, integer: true }),
      temperature: numberField("gen-temp", { min: 0, max: 100 }),
      stream: true,
      logprobs: 5,
    };
    const topK = numberField("gen-topk", { min: 0, integer: true });
    const topP = numberField("gen-topp", { min: 0, max: 1 });
    const ngram = numberField("gen-ngram", { min: 0, integer: true });
    const seed = numberField("gen-seed", { min: 0, integer: true, optional: true });
    if (body.temperature > 0) {
      if (topK > 0) body.top_k = topK;
      if (topP < 1) body.top_p = topP;
    }
    if (ngram > 0) body.no_repeat_ngram_size = ngram;
    if (seed !== null) body.seed = seed;
    return body;
  }

  function setGenerating(on) {
    $("gen-run").disabled = on;
    $("gen-stop").disabled = !on;
    $("gen-append").disabled = on || !gen.text;
    $("gen-output").setAttribute("aria-busy", String(on));
  }

  async function generate() {
    showError("");
    const prompt = $("text").value;
    if (!prompt) {
      $("gen-status").textContent = t("genEmpty");
      return;
    }
    let body;
    try {
      body = completionBody(prompt);
    } catch (err) {
      $("gen-status").textContent = err.message;
      return;
    }
    if (gen.controller) gen.controller.abort();
    const controller = new AbortController();
    gen.controller = controller;
    Object.assign(gen, { text: "", logprobs: null, prompt, state: "running", finish: null, tokens: 0 });
    $("gen-status").textContent = t("genRunning");
    renderGeneration();
    setGenerating(true);
    try {
      const response = await request("POST", "/v1/completions", body, controller.signal);
      await readEvents(response, controller.signal);
      if (gen.state === "running") gen.state = "done";
    } catch (err) {
      if (err && err.name === "AbortError") {
        gen.state = "stopped";
      } else {
        gen.state = "failed";
        handleFailure(err);
      }
    } finally {
      if (gen.controller === controller) gen.controller = null;
      setGenerating(false);
      $("gen-status").textContent =
        gen.state === "done"
          ? t("genDone", { n: gen.tokens, reason: gen.finish || "-" }) + ($("gen-probs").checked ? " " + t("genProbsHint") : "")
          : gen.state === "stopped"
            ? t("genStopped")
            : "";
      renderGeneration();
    }
  }

  /** Read OpenAI's server-sent events: text chunks, then the last chunk's finish reason and logprobs. */
  async function readEvents(response, signal) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (signal.aborted) return;
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = event
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk.error.message);
        const choice = chunk.choices && chunk.choices[0];
        if (!choice) continue;
        if (choice.text) {
          gen.text += choice.text;
          appendGenerated(choice.text);
        }
        if (choice.logprobs) {
          gen.logprobs = choice.logprobs;
          gen.tokens = choice.logprobs.tokens.length;
        }
        if (choice.finish_reason) gen.finish = choice.finish_reason;
      }
      if (done) return;
    }
  }

  function appendGenerated(text) {
    $("gen-output").querySelector(".generated").append(document.createTextNode(text));
  }

  function renderGeneration() {
    const out = $("gen-output");
    out.dataset.state = gen.state;
    out.querySelector(".prompt").textContent = gen.prompt;
    const generated = out.querySelector(".generated");
    generated.replaceChildren();
    out.dataset.text = gen.state === "running" ? "" : gen.text;
    const lp = gen.logprobs;
    const probs = $("gen-probs").checked && lp && lp.tokens.join("") === gen.text && gen.state !== "running";
    out.classList.toggle("with-probs", Boolean(probs));
    if (!probs) {
      generated.textContent = gen.text;
      return;
    }
    lp.tokens.forEach((text, i) => {
      const logprob = lp.token_logprobs[i];
      const prob = logprob === null ? null : Math.exp(logprob);
      const tops = lp.top_logprobs[i] || {};
      const alternatives = Object.entries(tops).map(([alt, l]) => ({ text: alt, prob: Math.exp(l) }));
      const lines = [JSON.stringify(text), prob === null ? t("notPredicted") : t("prob") + " " + pct(prob)];
      const span = tokenSpan(text, probColour(prob), lines, alternatives);
      span.dataset.prob = prob === null ? "" : String(prob);
      generated.append(span);
    });
  }

  // ---- tabs ----------------------------------------------------------------------------------

  const TABS = ["suggest", "explain", "generate"];
  let activeTab = "suggest";

  function selectTab(name, focus) {
    activeTab = name;
    for (const tab of TABS) {
      const button = $("tab-" + tab);
      const on = tab === name;
      button.setAttribute("aria-selected", String(on));
      button.tabIndex = on ? 0 : -1;
      $("panel-" + tab).hidden = !on;
      if (on && focus) button.focus();
    }
    document.body.dataset.view = name;
    if (name === "suggest") requestSuggestions(++inputSeq);
    else if (suggest.controller) suggest.controller.abort();
    if (name === "explain") requestExplanation();
  }

  function onTabKey(e) {
    const i = TABS.indexOf(activeTab);
    let next = null;
    if (e.key === "ArrowRight" || e.key === "ArrowDown") next = TABS[(i + 1) % TABS.length];
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") next = TABS[(i + TABS.length - 1) % TABS.length];
    else if (e.key === "Home") next = TABS[0];
    else if (e.key === "End") next = TABS[TABS.length - 1];
    if (next) {
      e.preventDefault();
      selectTab(next, true);
    }
  }

  // ---- the key and start-up ------------------------------------------------------------------

  let modelInfo = null;

  function showModel(model) {
    const nw = model.nextword || {};
    $("model").textContent = t("model", { name: model.id, backend: nw.backend || "?", ctx: model.max_model_len || "?" });
  }

  function askForKey(message) {
    $("work").hidden = true;
    $("loading").hidden = true;
    $("key-panel").hidden = false;
    $("key-forget").hidden = true;
    $("key-error").textContent = message || "";
    const input = $("key-input");
    input.value = "";
    input.focus();
  }

  /** Ask the server who it serves; resolves true when the page may work, false when a key is needed. */
  async function connect() {
    try {
      const response = await request("GET", "/v1/models");
      const data = await response.json();
      modelInfo = data.data[0];
      showModel(modelInfo);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return false;
      throw err;
    }
  }

  function openWork() {
    $("loading").hidden = true;
    $("key-panel").hidden = true;
    $("work").hidden = false;
    $("key-forget").hidden = !sessionStorage.getItem(API_KEY);
    $("text").focus();
    selectTab(activeTab, false);
  }

  async function submitKey(e) {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) {
      $("key-error").textContent = t("keyEmpty");
      return;
    }
    sessionStorage.setItem(API_KEY, key);
    try {
      if (await connect()) {
        $("key-error").textContent = "";
        showError("");
        openWork();
      } else {
        sessionStorage.removeItem(API_KEY);
        askForKey(t("keyRejected"));
      }
    } catch (err) {
      sessionStorage.removeItem(API_KEY);
      $("key-error").textContent = err.message;
    }
  }

  // ---- wiring --------------------------------------------------------------------------------

  let inputSeq = 0;

  function onInput() {
    const seq = ++inputSeq;
    performance.mark("nw-key-" + seq);
    if (activeTab === "suggest") requestSuggestions(seq);
    else if (activeTab === "explain") requestExplanation();
  }

  function onTextKey(e) {
    if (e.isComposing || e.keyCode === 229) return; // an input method is composing: leave its keys alone
    if (!suggestionsShown()) return;
    const n = suggest.result.candidates.length;
    if (e.key === "Tab" && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      accept(suggest.selected);
    } else if (e.key === "Escape") {
      e.preventDefault();
      dismiss();
    } else if (e.key === "ArrowDown" && !e.altKey) {
      e.preventDefault();
      suggest.selected = (suggest.selected + 1) % n;
      renderSuggestions();
    } else if (e.key === "ArrowUp" && !e.altKey) {
      e.preventDefault();
      suggest.selected = (suggest.selected + n - 1) % n;
      renderSuggestions();
    }
  }

  function start() {
    window.nextwordPlayground = { painted: [], suggestionSource, strings: STRINGS };
    $("lang").addEventListener("change", () => {
      lang = $("lang").value;
      sessionStorage.setItem(LANG_KEY, lang);
      applyLanguage();
    });
    $("key-form").addEventListener("submit", submitKey);
    $("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(API_KEY);
      askForKey("");
    });
    const area = $("text");
    area.addEventListener("input", onInput);
    area.addEventListener("keydown", onTextKey);
    $("k").addEventListener("change", () => requestSuggestions(++inputSeq));
    $("complete").addEventListener("change", () => requestSuggestions(++inputSeq));
    for (const tab of TABS) {
      $("tab-" + tab).addEventListener("click", () => selectTab(tab, true));
      $("tab-" + tab).addEventListener("keydown", onTabKey);
    }
    $("explain-unit").addEventListener("change", renderExplanation);
    $("explain-colour").addEventListener("change", () => {
      renderLegend();
      renderExplanation();
    });
    $("gen-form").addEventListener("submit", (e) => {
      e.preventDefault();
      generate();
    });
    $("gen-stop").addEventListener("click", () => {
      if (gen.controller) gen.controller.abort();
    });
    $("gen-probs").addEventListener("change", renderGeneration);
    $("gen-append").addEventListener("click", () => {
      if (!gen.text) return;
      area.value += gen.text;
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
      onInput();
    });
    applyLanguage();
    connect()
      .then((ok) => (ok ? openWork() : askForKey(sessionStorage.getItem(API_KEY) ? t("keyRejected") : "")))
      .catch((err) => {
        $("loading").hidden = true;
        showError(err.message);
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
