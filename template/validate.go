package template

// Validate checks the profile-level rules.
func (p *Profile) Validate() error { return nil }
