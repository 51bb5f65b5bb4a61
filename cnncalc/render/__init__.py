"""Renderers: an analysis in, text out. Nothing here computes a quantity."""

FORMATS = ("table", "json", "markdown", "latex", "csv")
