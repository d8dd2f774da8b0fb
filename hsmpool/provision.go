package hsmpool

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/miekg/pkcs11"

	"github.com/perso-esim/perso/esim"
)

// Secret key kinds that can be provisioned.
const (
	KindKEK           = "kek"            // AES-256, wrap/unwrap only, never extractable
	KindTransportAES  = "transport-aes"  // AES-128, decrypt only (Ki/OPc transport key)
	KindTransport3DES = "transport-3des" // 3DES (2- or 3-key), decrypt only
)

// ErrKeyExists is returned when provisioning a label that is already taken.
var ErrKeyExists = errors.New("hsmpool: a key with this label already exists")

// KeyInfo describes a provisioned key (no key material).
type KeyInfo struct {
	Label string `json:"label"`
	Class string `json:"class"` // "private", "public", "secret"
	Type  string `json:"type"`  // "EC", "AES", "3DES", ...
	Curve string `json:"curve,omitempty"`
	Bits  int    `json:"bits,omitempty"`
}

func secretSpec(kind string, value []byte) (keyType uint, length int, err error) {
	switch kind {
	case KindKEK:
		return pkcs11.CKK_AES, 32, nil
	case KindTransportAES:
		return pkcs11.CKK_AES, 16, nil
	case KindTransport3DES:
		if value != nil && len(value) != 16 && len(value) != 24 {
			return 0, 0, fmt.Errorf("%w: 3DES key must be 16 or 24 bytes", ErrBadInput)
		}
		return pkcs11.CKK_DES3, 24, nil
	}
	return 0, 0, fmt.Errorf("%w: unknown key kind %q", ErrBadInput, kind)
}

// des3Key expands a 2-key 3DES key K1K2 to K1K2K1.
func des3Key(v []byte) []byte {
	out := make([]byte, 0, 24)
	out = append(out, v...)
	if len(v) == 16 {
		out = append(out, v[:8]...)
	}
	return out
}

// GenerateSecretKey generates a secret key of the given kind (KindKEK,
// KindTransportAES, KindTransport3DES) inside the token under label.
func (p *Pool) GenerateSecretKey(ctx context.Context, label, kind string) error {
	return p.do(ctx, "provision", LaneOf(ctx, Batch), label, func(slot int) error {
		return p.be.createSecret(ctx, slot, label, kind, nil)
	})
}

// ImportSecretKey imports a known secret value (e.g. a test transport key).
// The value is copied into the token and the caller should clear it.
func (p *Pool) ImportSecretKey(ctx context.Context, label, kind string, value []byte) error {
	if value == nil {
		return fmt.Errorf("%w: empty key value", ErrBadInput)
	}
	return p.do(ctx, "provision", LaneOf(ctx, Batch), label, func(slot int) error {
		return p.be.createSecret(ctx, slot, label, kind, value)
	})
}

// GenerateECKey generates a signing key pair on curve inside the token,
// returning the uncompressed public point.
func (p *Pool) GenerateECKey(ctx context.Context, label string, curve esim.Curve) ([]byte, error) {
	var pt []byte
	err := p.do(ctx, "provision", LaneOf(ctx, Batch), label, func(slot int) (e error) {
		pt, e = p.be.createEC(ctx, slot, label, curve, nil)
		return
	})
	return pt, err
}

// ImportECKeyPEM imports an EC private key (SEC1 or PKCS#8 PEM, P-256 or
// brainpoolP256r1, e.g. an SGP.26 SK_*.pem) as a non-extractable signing key
// plus its public key, returning the curve and public point.
func (p *Pool) ImportECKeyPEM(ctx context.Context, label string, pemData []byte) (esim.Curve, []byte, error) {
	k, err := esim.ParseECPrivateKeyPEM(pemData)
	if err != nil {
		return 0, nil, keyErr(err)
	}
	defer k.Zero()
	var pt []byte
	err = p.do(ctx, "provision", LaneOf(ctx, Batch), label, func(slot int) (e error) {
		pt, e = p.be.createEC(ctx, slot, label, k.Curve, k)
		return
	})
	return k.Curve, pt, err
}

// ListKeys lists the token's keys.
func (p *Pool) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	var ks []KeyInfo
	err := p.do(ctx, "list", LaneOf(ctx, Batch), "", func(slot int) (e error) {
		ks, e = p.be.list(ctx, slot)
		return
	})
	return ks, err
}

// ---- PKCS#11 ----

func (b *p11Backend) exists(sh pkcs11.SessionHandle, label string) error {
	hs, err := b.find(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}, 1)
	if err != nil {
		return err
	}
	if len(hs) > 0 {
		return fmt.Errorf("%w: %q", ErrKeyExists, label)
	}
	return nil
}

func (b *p11Backend) createSecret(ctx context.Context, i int, label, kind string, value []byte) error {
	keyType, length, err := secretSpec(kind, value)
	if err != nil {
		return err
	}
	if value != nil && keyType == pkcs11.CKK_AES && len(value) != length {
		return fmt.Errorf("%w: %s key must be %d bytes", ErrBadInput, kind, length)
	}
	kek := kind == KindKEK
	t := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(label)),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, kek),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, kek),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, !kek),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	}
	return b.with(ctx, i, func(sh pkcs11.SessionHandle) error {
		if err := b.exists(sh, label); err != nil {
			return err
		}
		if value == nil {
			mech := mechAESGen
			if keyType == pkcs11.CKK_DES3 {
				mech = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_DES3_KEY_GEN, nil)}
			} else {
				t = append(t, pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, length))
			}
			_, err := b.api.GenerateKey(sh, mech, t)
			return err
		}
		v := value
		if keyType == pkcs11.CKK_DES3 {
			v = des3Key(value)
			defer clear(v)
		}
		_, err := b.api.CreateObject(sh, append(t, pkcs11.NewAttribute(pkcs11.CKA_VALUE, v)))
		return err
	})
}

func derOctets(p []byte) []byte {
	return append([]byte{0x04, byte(len(p))}, p...)
}

func (b *p11Backend) createEC(ctx context.Context, i int, label string, c esim.Curve, k *ecPrivate) ([]byte, error) {
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ecParams(c)),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(label)),
	}
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(label)),
	}
	var point []byte
	err := b.with(ctx, i, func(sh pkcs11.SessionHandle) error {
		if err := b.exists(sh, label); err != nil {
			return err
		}
		if k == nil {
			pub, _, err := b.api.GenerateKeyPair(sh, mechECGen, pubT[2:], privT[2:])
			if err != nil {
				return err
			}
			attrs, err := b.api.GetAttributeValue(sh, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
			if err != nil {
				return err
			}
			point, err = ecPointFromAttr(attrs[0].Value)
			return err
		}
		priv := append(privT, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ecParams(c)), pkcs11.NewAttribute(pkcs11.CKA_VALUE, k.D))
		h, err := b.api.CreateObject(sh, priv)
		if err != nil {
			return err
		}
		if _, err := b.api.CreateObject(sh, append(pubT, pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, derOctets(k.Point)))); err != nil {
			b.api.DestroyObject(sh, h)
			return err
		}
		point = k.Point
		return nil
	})
	return point, err
}

func (b *p11Backend) list(ctx context.Context, i int) ([]KeyInfo, error) {
	var out []KeyInfo
	err := b.with(ctx, i, func(sh pkcs11.SessionHandle) error {
		out = nil
		hs, err := b.find(sh, nil, 1000)
		if err != nil {
			return err
		}
		for _, h := range hs {
			attrs, err := b.api.GetAttributeValue(sh, h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
			})
			if err != nil {
				return err
			}
			ki := KeyInfo{Label: string(attrs[0].Value)}
			switch attrUint(attrs[1].Value) {
			case pkcs11.CKO_PRIVATE_KEY:
				ki.Class = "private"
			case pkcs11.CKO_PUBLIC_KEY:
				ki.Class = "public"
			case pkcs11.CKO_SECRET_KEY:
				ki.Class = "secret"
			default:
				continue
			}
			switch attrUint(attrs[2].Value) {
			case pkcs11.CKK_EC:
				ki.Type = "EC"
				if a, err := b.api.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil)}); err == nil {
					if c, err := curveFromParams(a[0].Value); err == nil {
						ki.Curve = c.String()
					}
				}
			case pkcs11.CKK_AES:
				ki.Type = "AES"
				if a, err := b.api.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil)}); err == nil {
					ki.Bits = 8 * int(attrUint(a[0].Value))
				}
			case pkcs11.CKK_DES3:
				ki.Type = "3DES"
			default:
				ki.Type = "other"
			}
			out = append(out, ki)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Label != out[j].Label {
				return out[i].Label < out[j].Label
			}
			return out[i].Class < out[j].Class
		})
		return nil
	})
	return out, err
}

// Key labels provisioned by `perso hsm init` (see the package doc).
const (
	LabelDPauthNIST = "dpauth-nist"
	LabelDPauthBRP  = "dpauth-brp"
	LabelDPpbNIST   = "dppb-nist"
	LabelDPpbBRP    = "dppb-brp"
	LabelTransport1 = "transport-1"
)

// DPauthLabel returns the label of the SM-DP+ authentication key on curve c
// ("dpauth-nist" or "dpauth-brp").
func DPauthLabel(c esim.Curve) string { return "dpauth-" + labelSuffix(c) }

// DPpbLabel returns the label of the SM-DP+ profile-binding key on curve c
// ("dppb-nist" or "dppb-brp").
func DPpbLabel(c esim.Curve) string { return "dppb-" + labelSuffix(c) }
