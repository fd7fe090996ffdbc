"""Data: 2-D toy mixtures with matched moments (toy2d) and image sets (images)."""
