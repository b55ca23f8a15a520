"""The daemon's database: typed models, the engine and sessions, repository functions."""
