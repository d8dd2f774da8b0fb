package template

import (
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/cputime"
)

// report adds the throughput metrics; start is cputime.Process() at ResetTimer.
func report(b *testing.B, start time.Duration, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
	if cpu := cputime.Process() - start; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), unit+"/cpu-s")
	}
}

func benchTemplate(b *testing.B) []byte {
	return ts48(b)["TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"]
}

func benchValues(b *testing.B, pl *Plan) *Values {
	v := randomValues(seedFor("bench"), pl)
	if _, err := pl.Apply(v, nil); err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkApply: one personalised UPP from a compiled TS.48 template
// (ICCID, IMSI/ACC, algorithm, K/OPc ×2, PIN1, PIN2 ×4, ADM1/2, PUK1/2,
// 6 SD keys), into a reused buffer.
func BenchmarkApply(b *testing.B) {
	der := benchTemplate(b)
	pl, err := Compile(der)
	if err != nil {
		b.Fatal(err)
	}
	v := benchValues(b, pl)
	buf := make([]byte, 0, len(der)+256)
	b.SetBytes(int64(len(der)))
	b.ReportAllocs()
	b.ResetTimer()
	start := cputime.Process()
	for i := 0; i < b.N; i++ {
		if _, err = pl.Apply(v, buf); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, "profiles")
}

// BenchmarkApplyVariable adds SMSC, SPN (re-encoding the usim PE) and
// MSISDN (re-encoding the opt-usim PE).
func BenchmarkApplyVariable(b *testing.B) {
	der := benchTemplate(b)
	pl, err := Compile(der)
	if err != nil {
		b.Fatal(err)
	}
	v := benchValues(b, pl)
	v.SMSC, v.SPN, v.MSISDN = "+447700900123", "perso", "+447700900999"
	buf := make([]byte, 0, len(der)+256)
	b.SetBytes(int64(len(der)))
	b.ReportAllocs()
	b.ResetTimer()
	start := cputime.Process()
	for i := 0; i < b.N; i++ {
		if _, err = pl.Apply(v, buf); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, "profiles")
}

// BenchmarkDecodeEncode: the full (typed) decoder plus re-encoding.
func BenchmarkDecodeEncode(b *testing.B) {
	der := benchTemplate(b)
	b.SetBytes(int64(len(der)))
	b.ReportAllocs()
	b.ResetTimer()
	start := cputime.Process()
	for i := 0; i < b.N; i++ {
		p, err := Decode(der)
		if err != nil {
			b.Fatal(err)
		}
		_ = p.Encode()
	}
	report(b, start, "profiles")
}

// BenchmarkCompile: decode, validate and locate every slot (once per template).
func BenchmarkCompile(b *testing.B) {
	der := benchTemplate(b)
	b.ReportAllocs()
	start := cputime.Process()
	for i := 0; i < b.N; i++ {
		if _, err := Compile(der); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, "templates")
}

// BenchmarkDecode: the full decoder alone.
func BenchmarkDecode(b *testing.B) {
	der := benchTemplate(b)
	b.SetBytes(int64(len(der)))
	b.ReportAllocs()
	start := cputime.Process()
	for i := 0; i < b.N; i++ {
		if _, err := Decode(der); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, "profiles")
}

// BenchmarkEncode: re-encoding a decoded profile from its tree.
func BenchmarkEncode(b *testing.B) {
	der := benchTemplate(b)
	p, err := Decode(der)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(der)))
	b.ReportAllocs()
	b.ResetTimer()
	start := cputime.Process()
	for i := 0; i < b.N; i++ {
		_ = p.Encode()
	}
	report(b, start, "profiles")
}
