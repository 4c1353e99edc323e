"""Bad input: every invalid spec, SLO and scenario is refused naming its field and the fix."""
