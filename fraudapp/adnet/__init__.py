"""Ad-network checks: stacked ads, IP blocklist, suspicious location, heavy hitters, rate limits."""
