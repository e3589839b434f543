"""What the module-level functions do: the calls, their async twins, settings resolution."""
