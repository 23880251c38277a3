"""ATM fraud: one account's card used in two places too far apart too quickly."""
