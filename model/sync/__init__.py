"""omnitalker: model.sync -- the contrastive lip-sync model (StyleTalker), its scoring, and SyncNet for the standard metric."""
