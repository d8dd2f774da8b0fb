package hsmpool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/miekg/pkcs11"
)

// isSoftHSM says whether a module's C_GetInfo manufacturer is SoftHSM
// (SoftHSM2 reports "SoftHSM").
func isSoftHSM(manufacturer string) bool {
	return strings.HasPrefix(strings.TrimSpace(manufacturer), "SoftHSM")
}

// InitToken initialises a fresh token labelled label in the first free slot
// of module (for SoftHSM2: the directory named by SOFTHSM2_CONF, which must
// be set before the call), sets its SO PIN and user PIN, and unloads the
// module again. PINs go straight to C_InitToken/C_InitPIN, never onto a
// command line. It fails if a token with that label already exists, and
// on any module that is not SoftHSM2.
func InitToken(module, label, soPIN, userPIN string) error {
	if label == "" || soPIN == "" || userPIN == "" {
		return errors.New("hsmpool: InitToken needs a label, an SO PIN and a user PIN")
	}
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if modules[module] {
		return fmt.Errorf("hsmpool: module %s is open in this process; InitToken must run before Open", module)
	}
	c := pkcs11.New(module)
	if c == nil {
		return fmt.Errorf("hsmpool: cannot load PKCS#11 module %s", module)
	}
	defer c.Destroy()
	if err := c.Initialize(); err != nil {
		return fmt.Errorf("hsmpool: C_Initialize %s: %s", module, describe(err))
	}
	defer c.Finalize()
	// Only SoftHSM2 keeps its tokens where SOFTHSM2_CONF says: on any
	// other module a "free slot" is a real device's, and initialising a
	// token there is not ours to do.
	info, err := c.GetInfo()
	if err != nil {
		return fmt.Errorf("hsmpool: C_GetInfo %s: %s", module, describe(err))
	}
	if !isSoftHSM(info.ManufacturerID) {
		return fmt.Errorf("hsmpool: %s is a PKCS#11 module by %q, not SoftHSM2: InitToken creates throwaway SoftHSM2 tokens only; create tokens on this HSM with its vendor's tools",
			module, strings.TrimSpace(info.ManufacturerID))
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("hsmpool: C_GetSlotList: %s", describe(err))
	}
	free := -1
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			if free < 0 {
				free = int(s)
			}
			continue
		}
		if trimLabel(ti.Label) == label {
			return fmt.Errorf("hsmpool: a token labelled %q already exists", label)
		}
	}
	if free < 0 {
		return errors.New("hsmpool: no free slot to initialise a token in")
	}
	if err := c.InitToken(uint(free), soPIN, label); err != nil {
		return fmt.Errorf("hsmpool: C_InitToken: %s", describe(err))
	}
	// SoftHSM2 moves the new token to a new slot ID: find it by label.
	slots, err = c.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("hsmpool: C_GetSlotList: %s", describe(err))
	}
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil || trimLabel(ti.Label) != label {
			continue
		}
		sh, err := c.OpenSession(s, sessFlags)
		if err != nil {
			return fmt.Errorf("hsmpool: C_OpenSession: %s", describe(err))
		}
		defer c.CloseSession(sh)
		if err := c.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
			return fmt.Errorf("hsmpool: SO login: %s", describe(err))
		}
		defer c.Logout(sh)
		if err := c.InitPIN(sh, userPIN); err != nil {
			return fmt.Errorf("hsmpool: C_InitPIN: %s", describe(err))
		}
		return nil
	}
	return errors.New("hsmpool: the initialised token did not appear")
}

// TokenLabels lists the labels of the initialised tokens module offers. It
// loads the module and unloads it again, so it refuses a module a Pool in
// this process holds; it is meant for error hints and set-up tools.
func TokenLabels(module string) ([]string, error) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if modules[module] {
		return nil, fmt.Errorf("hsmpool: module %s is open in this process", module)
	}
	c := pkcs11.New(module)
	if c == nil {
		return nil, fmt.Errorf("hsmpool: cannot load PKCS#11 module %s", module)
	}
	defer c.Destroy()
	if err := c.Initialize(); err != nil {
		return nil, fmt.Errorf("hsmpool: C_Initialize %s: %s", module, describe(err))
	}
	defer c.Finalize()
	slots, err := c.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("hsmpool: C_GetSlotList: %s", describe(err))
	}
	var labels []string
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		labels = append(labels, trimLabel(ti.Label))
	}
	return labels, nil
}

// Diagnose adds to an error of Open or InitToken on the pkcs11 backend what
// an operator needs to fix it: for a token that is not there, the labels of
// the tokens the module does offer; for a module that failed to load or
// initialise, its path; and for SoftHSM2, the configuration file it read
// (SOFTHSM2_CONF), the usual cause of both. The result wraps err. It loads
// the module again to list its tokens, so call it only after Open failed.
func Diagnose(cfg Config, err error) error {
	if err == nil || cfg.Backend == BackendSoftware {
		return err
	}
	var hints []string
	msg := err.Error()
	switch code := p11Code(err); {
	case code == pkcs11.CKR_TOKEN_NOT_PRESENT || code == pkcs11.CKR_TOKEN_NOT_RECOGNIZED ||
		code == pkcs11.CKR_SLOT_ID_INVALID || code == pkcs11.CKR_DEVICE_REMOVED:
		h := fmt.Sprintf("no token labelled %q in module %s", cfg.TokenLabel, cfg.Module)
		switch labels, lerr := TokenLabels(cfg.Module); {
		case lerr != nil:
			h += " (listing its tokens failed too: " + lerr.Error() + ")"
		case len(labels) == 0:
			h += "; it offers no initialised token"
		default:
			for i, l := range labels {
				labels[i] = strconv.Quote(l)
			}
			h += "; tokens present: " + strings.Join(labels, ", ")
		}
		hints = append(hints, h)
	case strings.Contains(msg, "cannot load PKCS#11 module"):
		if _, serr := os.Stat(cfg.Module); serr != nil {
			hints = append(hints, serr.Error())
		} else {
			hints = append(hints, "the file exists but is not a loadable PKCS#11 module for this system")
		}
	case strings.Contains(msg, "C_Initialize"):
		hints = append(hints, "module "+cfg.Module+" failed to initialise")
	default:
		return err
	}
	if strings.Contains(strings.ToLower(filepath.Base(cfg.Module)), "softhsm") {
		switch conf := os.Getenv("SOFTHSM2_CONF"); {
		case conf == "":
			hints = append(hints, "SOFTHSM2_CONF is not set, so SoftHSM2 read its default configuration (/etc/softhsm/softhsm2.conf)")
		default:
			if _, serr := os.Stat(conf); serr != nil {
				hints = append(hints, "SoftHSM2 configuration SOFTHSM2_CONF="+conf+": "+serr.Error())
			} else {
				hints = append(hints, "SoftHSM2 configuration read: SOFTHSM2_CONF="+conf)
			}
		}
	}
	return &diagnosedError{err: err, hint: strings.Join(hints, "; ")}
}

// diagnosedError is an error with an operator's hint; it unwraps to the
// original error.
type diagnosedError struct {
	err  error
	hint string
}

func (e *diagnosedError) Error() string { return e.err.Error() + ": " + e.hint }
func (e *diagnosedError) Unwrap() error { return e.err }
