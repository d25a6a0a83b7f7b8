"""Alerts and digests: rules read from a TOML file are judged against the store, each incident is
told once to its channels (Slack, a webhook, email) and once more when it clears, and a digest
sums up a day or a week. The store keeps the incidents and the deliveries, so a restart neither
repeats nor forgets."""
