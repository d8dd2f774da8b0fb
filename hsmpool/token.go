package hsmpool

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// InitToken initialises a fresh token labelled label in the first free slot
// of module (for SoftHSM2: the directory named by SOFTHSM2_CONF, which must
// be set before the call), sets its SO PIN and user PIN, and unloads the
// module again. PINs go straight to C_InitToken/C_InitPIN, never onto a
// command line. It fails if a token with that label already exists.
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
