package template

// The card codings of ICCIDs, IMSIs and PIN/PUK/ADM codes live in package
// esim (ICCID.BCD/SwappedBCD, IMSI.EF/ACC, CodeKind.Encode/Check,
// CodeText); what remains here are the dialling numbers of EF.MSISDN and
// EF.SMSP, which only a profile holds.

// checkDigits validates a decimal string's length without echoing it.
func checkDigits(field, s string, min, max int) error {
	if len(s) < min || len(s) > max {
		return valueErr(field, "%d digits, want %d–%d", len(s), min, max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return valueErr(field, "non-decimal character at position %d", i+1)
		}
	}
	return nil
}

// nibble returns digit i of s, or F beyond its end.
func nibble(s string, i int) byte {
	if i < len(s) {
		return s[i] - '0'
	}
	return 0xF
}
