"""Bars in: reading tables, timestamps and exchange calendars, valid candles and the model's features."""
