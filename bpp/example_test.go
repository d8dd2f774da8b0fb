package bpp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
)

// The whole flow: the batch protects a personalised UPP once under a fresh
// PPK; at download time the SM-DP+ binds the stored PPP for one eUICC; the
// eUICC opens it. In production the Signer and KeyAgreement come from
// hsmpool and the PPK is unwrapped from the store just for Bind.
func Example() {
	// A tiny UPP: one ProfileElement and the end PE.
	upp := append([]byte{0xA0, 0x03, 1, 2, 3}, 0xAA, 0x07, 0xA0, 0x05, 0x80, 0x00, 0x81, 0x01, 0x02)

	// Batch: protect under a fresh random PPK.
	ppp, err := bpp.Protect(upp, nil)
	if err != nil {
		panic(err)
	}

	// SM-DP+ keys (software here; hsmpool in production).
	dppb, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := bpp.NewSoftwareSigner(dppb)
	ka, _ := bpp.NewSoftwareKeyAgreement(esim.CurveP256)

	// The eUICC's one-time key, sent in PrepareDownloadResponse.
	euicc, _ := bpp.GenerateOneTimeKey(esim.CurveP256, nil)
	eid := bytes.Repeat([]byte{0x89}, bpp.EIDSize)
	iccid, _ := esim.ParseICCID("89000123456789012341")

	// Download: bind the stored PPP for this eUICC.
	bound, err := bpp.Bind(context.Background(), signer, ka, &bpp.BindParams{
		TransactionID: []byte{0x01, 0x02},
		HostID:        []byte("perso-01"),
		EID:           eid,
		EUICCOtpk:     euicc.PublicKey(),
		Metadata:      &bpp.StoreMetadata{ICCID: iccid, ServiceProviderName: "Operator", ProfileName: "Test"},
	}, ppp)
	ppp.PPK.Zero()
	if err != nil {
		panic(err)
	}

	// eUICC: verify, decrypt, install.
	opened, err := bpp.Open(bound, euicc, eid, &dppb.PublicKey)
	if err != nil {
		panic(err)
	}
	fmt.Println(bytes.Equal(opened.UPP, upp), opened.StoreMetadata.ICCID, opened.PPKMode)
	// Output: true 89000123456789012341 true
}
