"""Whole-word prediction and completion of a half-typed word."""
