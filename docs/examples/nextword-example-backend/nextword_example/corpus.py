"""The built-in training text of the ``builtin`` model.

Paragraphs are separated by blank lines; each paragraph is one training document, so the model
learns to end a paragraph with its end-of-text token.
"""

from __future__ import annotations

BUILTIN_TEXT = """
I love cats because they are quiet company. A cat sits by the window and watches the rain,
and when the rain stops it goes out to look at the wet garden.

I love cats because they keep their own hours. Our cat sleeps all morning, wakes up at noon,
and spends the afternoon chasing a moth around the kitchen.

I love dogs too, but a dog wants a walk in every kind of weather, and a cat does not.

The weather today is grey and mild, with a light wind from the west and a little rain in the
afternoon. Tomorrow the sky should clear, and the evening will be cold.

The weather today is bright and warm. People sit outside the cafe, the children play in the
park, and the cat lies on the warm stones of the garden wall.

The weather this week has been strange: sun in the morning, storms after lunch, and a clear
sky again by the time the moon comes up.

Once upon a time there was a small cat who lived in a bakery. Every morning she sat by the
oven, and every evening the baker gave her a little piece of bread.

Once upon a time a boy found a door at the back of the garden. Behind the door was a path,
and the path went down to the sea.

Once upon a time there was a town where it rained every day. The people grew tired of the
rain, so they built a great roof over the whole town, and then they missed the rain.

The old man walked to the market every day. He bought bread, a few apples and some milk for
the cat, and he always stopped to talk about the weather.

A good story needs a place, a person and a problem. The rest is what the person does about
the problem, and what the place does to the person.

The river runs past the mill and under the stone bridge. In spring it is fast and brown, and
in summer it is slow and clear enough to see the fish.

She opened the window and listened. The wind was in the trees, a dog barked far away, and the
first drops of rain were falling on the roof.

We walked along the beach until the sun went down. The sand was still warm, the sea was calm,
and the lights of the town came on one by one.

The cat came home late, wet and hungry, and went straight to her bowl. After her supper she
washed her face and fell asleep by the fire.

It is a simple model. It reads a few characters and guesses the next one, the way a person
guesses the end of a word they have seen many times before.
"""
