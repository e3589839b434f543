"""Plugin discovery: the hook specifications and the registry of backends."""
