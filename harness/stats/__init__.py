"""Statistics over seeds and the claims checked with them."""
