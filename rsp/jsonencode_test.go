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

// scanPlainObject agrees with encoding/json on every input it accepts,
// and accepts the bodies ES9+ exchanges: real ones, and each of them
// with one byte changed.
func TestScanPlainObjectAgreesWithEncodingJSON(t *testing.T) {
	bodies := []string{
		`{}`, ` { } `, `{"a":"b"}`, "{\"a\" :\t\"b\" ,\n\"c\":{\"d\":\"e\"}}\r\n",
		`{"header":{"functionExecutionStatus":{"status":"Executed-Success"}},"transactionId":"0A0B","boundProfilePackage":"vzYBAA=="}`,
		`{"a":"b","a":{"c":"d"}}`, `{"a":"b",}`, `{"a":1}`, `{"a":"\u0041"}`, `{"a":"é"}`, `{"a":"b"} x`, `{"a":"b"}}`,
		`{"a":{"b":{"c":{"d":{"e":{"f":"g"}}}}}}`, `{"a":"b"`, `{"a" "b"}`, `{a:"b"}`, `null`, `[]`, `"x"`, ``, `{"":""}`,
	}
	var ok int
	check := func(body []byte) {
		got, accepted := scanPlainObject(body)
		var want map[string]json.RawMessage
		err := json.Unmarshal(body, &want)
		if !accepted {
			return
		}
		ok++
		if err != nil || want == nil {
			t.Fatalf("%q: accepted, encoding/json: %v", body, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d members, encoding/json %d", body, len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("%q: member %q = %s, encoding/json %s", body, k, got[k], v)
			}
		}
	}
	for _, b := range bodies {
		check([]byte(b))
		for i := range len(b) {
			for _, c := range []byte{'"', '{', '}', ',', ':', ' ', '\\', 'x', 0x01, 0xC3} {
				m := []byte(b)
				m[i] = c
				check(m)
			}
		}
	}
	if ok < 100 {
		t.Fatalf("only %d inputs took the fast path", ok)
	}
	if _, accepted := scanPlainObject([]byte(bodies[4])); !accepted {
		t.Fatal("an ES9+ answer did not take the fast path")
	}
}

// FuzzScanPlainObject: whatever scanPlainObject accepts, encoding/json
// parses to the same members.
func FuzzScanPlainObject(f *testing.F) {
	f.Add([]byte(`{"header":{"functionExecutionStatus":{"status":"Executed-Success"}},"transactionId":"0A0B"}`))
	f.Add([]byte(`{"a":"b","c":{"d":"e"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, accepted := scanPlainObject(body)
		if !accepted {
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(body, &want); err != nil || want == nil || len(got) != len(want) {
			t.Fatalf("%q: accepted as %d members; encoding/json: %d, %v", body, len(got), len(want), err)
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("%q: member %q = %s, encoding/json %s", body, k, got[k], v)
			}
		}
	})
}
