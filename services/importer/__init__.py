"""Importer service: CSV/XLSX files into leads, streamed row by row."""
