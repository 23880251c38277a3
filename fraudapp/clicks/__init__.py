"""Click fraud: bursts of clicks on one URL within one session."""
