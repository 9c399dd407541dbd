"""omnitalker: model.styletalker -- StyleTalker's motion model on the project's 61-d codes (lip stream, motion VAE, flow prior)."""
