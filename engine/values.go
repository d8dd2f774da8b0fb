package engine

import (
	"fmt"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/template"
)

// OTA (SCP80) key identifiers inside one key version: KIc, KID, KIK.
const (
	otaKIc = 1
	otaKID = 2
	otaKIK = 3
)

// Values maps one validated personalisation record onto the template's
// slots. The secret slices of v alias those of rec: wipe rec (or v) once
// the profile is built and do not keep either.
//
// keepAlgorithm leaves the template's algorithm in place whatever the record
// says; set it for templates that declare only the one algorithm they ship
// with (e.g. the TS.48 test profiles with the USIM test algorithm).
func Values(rec *perso.Record, keepAlgorithm bool) (template.Values, error) {
	// The record was validated by its reader; parsing here gives the
	// template esim's types (it does not allocate).
	iccid, err := esim.ParseICCID(rec.ICCID)
	if err != nil {
		return template.Values{}, fmt.Errorf("engine: record: %w (validate the input first)", err)
	}
	imsi, err := esim.ParseIMSI(rec.IMSI)
	if err != nil {
		return template.Values{}, fmt.Errorf("engine: record %s: %w (validate the input first)", iccid, err)
	}
	v := template.Values{
		ICCID:  iccid,
		IMSI:   imsi,
		K:      rec.Ki.Bytes(),
		OPc:    rec.OPc.Bytes(),
		SMSC:   rec.SMSC,
		SPN:    rec.SPN,
		MSISDN: rec.MSISDN,
	}
	// Unset (the zero value) keeps the template's algorithm.
	if !keepAlgorithm {
		v.Algorithm = rec.Algorithm
	}
	// perso and the template both hold PIN/PUK/ADM in card form (ASCII
	// digits padded with FF, or an 8-byte binary ADM).
	v.PIN1 = cardCode(rec.PIN1)
	v.PIN2 = cardCode(rec.PIN2)
	v.PUK1 = cardCode(rec.PUK1)
	v.PUK2 = cardCode(rec.PUK2)
	v.ADM1 = cardCode(rec.ADM1)
	for _, set := range rec.OTA {
		for _, k := range []struct {
			id  byte
			key perso.Secret
		}{{otaKIc, set.KIc}, {otaKID, set.KID}, {otaKIK, set.KIK}} {
			if k.key.Len() == 0 {
				continue
			}
			v.SDKeys = append(v.SDKeys, template.SDKey{KVN: set.KVN, ID: k.id, Key: k.key.Bytes()})
		}
	}
	// OPc may be absent (the USIM test algorithm has none): the template's
	// value then stays. A profile without its own Ki is never built.
	if len(v.K) == 0 {
		return v, fmt.Errorf("engine: record %s has no Ki (validate the input first)", rec.ICCID)
	}
	return v, nil
}

// cardCode returns a card-form code (aliased); an absent code is nil so
// that the template keeps its value.
func cardCode(s perso.Secret) []byte {
	if s.Len() == 0 {
		return nil
	}
	return s.Bytes()
}
