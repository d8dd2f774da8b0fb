package smdp

import (
	"context"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/hsmpool"
)

// PoolHSM adapts an hsmpool.Pool to HSM: DPauth/DPpb signatures with the
// pool's dpauth-<curve>/dppb-<curve> keys, one-time ECDH and PPK unsealing,
// all on the pool's live lane, which batch work cannot starve.
type PoolHSM struct{ Pool *hsmpool.Pool }

func (h PoolHSM) Signer(role Role, c esim.Curve) bpp.Signer {
	if role == RoleDPauth {
		return h.Pool.Signer(hsmpool.DPauthLabel(c))
	}
	return h.Pool.Signer(hsmpool.DPpbLabel(c))
}

func (h PoolHSM) KeyAgreement(c esim.Curve) bpp.KeyAgreement { return h.Pool.KeyAgreement(c) }

func (h PoolHSM) UnprotectPPK(ctx context.Context, blob []byte, iccid string, protected []byte) ([]byte, error) {
	return h.Pool.UnprotectPPK(ctx, blob, iccid, protected)
}
