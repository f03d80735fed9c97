"""The base layer: errors, units, text, results files, paths and the version; imports nothing else of gpusplit."""
