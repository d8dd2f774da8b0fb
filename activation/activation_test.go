package activation

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"math/rand"
	"testing"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

func TestStringParse(t *testing.T) {
	for _, tc := range []struct {
		c    Code
		want string
	}{
		{Code{SMDPAddress: "testsmdpplus1.example.com", MatchingID: "K3ZQ7-AAAAA-BBBBB-CCCCC"}, "LPA:1$testsmdpplus1.example.com$K3ZQ7-AAAAA-BBBBB-CCCCC"},
		{Code{SMDPAddress: "smdp.example:8443", MatchingID: "M1", SMDPOID: "2.999.10"}, "LPA:1$smdp.example:8443$M1$2.999.10"},
		{Code{SMDPAddress: "smdp.example", MatchingID: "M1", CCRequired: true}, "LPA:1$smdp.example$M1$$1"},
		{Code{SMDPAddress: "smdp.example", MatchingID: "M1", SMDPOID: "2.999.10", CCRequired: true}, "LPA:1$smdp.example$M1$2.999.10$1"},
		{Code{SMDPAddress: "smdp.example"}, "LPA:1$smdp.example$"},
		{Code{SMDPAddress: "[::1]:8443", MatchingID: "M"}, "LPA:1$[::1]:8443$M"},
	} {
		if err := tc.c.Validate(); err != nil {
			t.Fatalf("%+v: %v", tc.c, err)
		}
		if got := tc.c.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
		back, err := Parse(tc.want)
		if err != nil || back != tc.c {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.want, back, err, tc.c)
		}
	}
}

func TestInvalid(t *testing.T) {
	// The prefix is accepted in either case, and absent.
	for _, s := range []string{"lpa:1$smdp.example$M", "1$smdp.example$M"} {
		if c, err := Parse(s); err != nil || c != (Code{SMDPAddress: "smdp.example", MatchingID: "M"}) {
			t.Errorf("Parse(%q) = %+v, %v", s, c, err)
		}
	}
	for _, s := range []string{"", "LPA:1$a", "LPA:2$a$b", "LPA:1$$m", "LPA:1$a$b$1.x", "LPA:1$a$b$$2", "LPA:1$a$b$c$d$e",
		"LPA:1$smdp example.com$M", "LPA:1$smdp.example.com$M\n", "LPA:1$smdp.example.com$M\x00"} {
		if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", s, err)
		}
	}
	if err := (Code{SMDPAddress: "a", MatchingID: "x$y"}).Validate(); !errors.Is(err, ErrSyntax) {
		t.Errorf("a '$' in the matching ID: %v", err)
	}
}

// TestQRRoundTrip decodes the PNG with an independent QR reader and gets
// back exactly the code's text, for fixed codes and 300 random matching IDs.
func TestQRRoundTrip(t *testing.T) {
	texts := []string{
		"LPA:1$testsmdpplus1.example.com$K3ZQ7-AAAAA-BBBBB-CCCCC",
		"LPA:1$smdp.example:8443$M1$2.999.10$1",
	}
	r := rand.New(rand.NewSource(1))
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
	for i := 0; i < 300; i++ {
		id := make([]byte, 0, 23)
		for j := 0; j < 20; j++ {
			if j > 0 && j%5 == 0 {
				id = append(id, '-')
			}
			id = append(id, alphabet[r.Intn(len(alphabet))])
		}
		texts = append(texts, "LPA:1$testsmdpplus1.example.com$"+string(id)+"$$1")
	}
	for _, text := range texts {
		b, err := QRPNG(text, 256)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("not a PNG: %v", err)
		}
		if img.Bounds() != image.Rect(0, 0, 256, 256) {
			t.Fatalf("bounds %v", img.Bounds())
		}
		bmp, err := gozxing.NewBinaryBitmapFromImage(img)
		if err != nil {
			t.Fatal(err)
		}
		// PURE_BARCODE: the image is the symbol itself, so the test checks
		// what is encoded rather than gozxing's camera-frame finder
		// heuristics, which miss about 1 in 100 clean 256-pixel symbols.
		res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_PURE_BARCODE: true})
		if err != nil {
			t.Fatalf("decoding the QR code of %q: %v", text, err)
		}
		if res.GetText() != text {
			t.Fatalf("QR code decodes to %q, want %q", res.GetText(), text)
		}
	}
}
