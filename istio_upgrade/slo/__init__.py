"""SLO tooling: PromQL for SLIs, alerting rules, Sloth input and one-shot gate checks."""
