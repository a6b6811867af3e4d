"""The reference shop backend: the contract a real shop implements for kefu's actions (docs/actions.md)."""
