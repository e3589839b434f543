"""The values the API takes and returns: ``DecodingConfig``, results, streams."""
