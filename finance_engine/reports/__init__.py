"""Self-contained reports (HTML with embedded plots, no network) for loan committees, insurers and the bureau."""
