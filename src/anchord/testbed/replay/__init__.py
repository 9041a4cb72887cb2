"""The runner for Unbound's and Deckard's replay scenarios (`anchord rpl`)."""
