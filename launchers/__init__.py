"""omnitalker: launchers -- the trainers' command lines, local or Ray Train (applications)."""
