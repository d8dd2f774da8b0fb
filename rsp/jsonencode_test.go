package rsp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// successObject writes the bytes json.Marshal wrote for the answer structs
// it replaced: the header first, then the members in order, base64 for
// binary members, strings escaped as encoding/json escapes them.
func TestSuccessObjectMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range []string{"0123456789ABCDEF", "", `quo"te`, `back\\slash`, "<html>&", "ctl\x01", "é", "\u2028"} {
		for _, n := range []int{0, 1, 2, 3, 64, 18000} {
			bin := make([]byte, n)
			for i := range bin {
				bin[i] = byte(r.Uint32())
			}
			want, err := json.Marshal(struct {
				Header jsonResponseHeader `json:"header"`
				TID    string             `json:"transactionId"`
				BPP    string             `json:"boundProfilePackage"`
			}{successHeader, s, base64.StdEncoding.EncodeToString(bin)})
			if err != nil {
				t.Fatal(err)
			}
			got := successObject(jsonStr("transactionId", s), jsonBin("boundProfilePackage", bin))
			if !bytes.Equal(got, want) {
				t.Fatalf("%q, %d bytes:\n got %.200s\nwant %.200s", s, n, got, want)
			}
		}
	}
	if got, want := successObject(), []byte(`{"header":{"functionExecutionStatus":{"status":"Executed-Success"}}}`); !bytes.Equal(got, want) {
		t.Fatalf("header only: %s, want %s", got, want)
	}
}

// plainString takes only strings whose bytes are their value.
func TestPlainString(t *testing.T) {
	for raw, want := range map[string]bool{`"QUJD"`: true, `""`: true, `"a\/b"`: false, `"é"`: false, `12`: false, `"x`: false} {
		s, ok := plainString(json.RawMessage(raw))
		if ok != want {
			t.Fatalf("%s: ok = %v", raw, ok)
		}
		if ok {
			var v string
			if err := json.Unmarshal([]byte(raw), &v); err != nil || v != s {
				t.Fatalf("%s: %q, encoding/json %q", raw, s, v)
			}
		}
	}
}
