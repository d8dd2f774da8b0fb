package template

import "strings"

// fsFields lists, per file-system PE type, the ASN.1 names of the
// components after the PE header (position 0) and templateID (position 1):
// index i is the component with context tag number i+2. Names follow the
// TCA PEDefinitions module (v3.3.1).
var fsFields = map[PEType][]string{
	PEMF:        words("mf ef-pl ef-iccid ef-dir ef-arr ef-umpc"),
	PECD:        words("df-cd ef-launchpad ef-icon"),
	PETelecom:   words("df-telecom ef-arr ef-rma ef-sume ef-ice-dn ef-ice-ff ef-psismsc df-graphics ef-img ef-iidf ef-ice-graphics ef-launch-scws ef-icon df-phonebook ef-pbr ef-ext1 ef-aas ef-gas ef-psc ef-cc ef-puid ef-iap ef-adn ef-pbc ef-anr ef-puri ef-email ef-sne ef-uid ef-grp ef-ccp1 df-multimedia ef-mml ef-mmdf df-mmss ef-mlpl ef-mspl ef-mmssmode df-mcs ef-mst ef-mcs-config df-v2x ef-vst ef-v2x-config ef-v2xp-pc5 ef-v2xp-Uu"),
	PEUSIM:      words("adf-usim ef-imsi ef-arr ef-keys ef-keysPS ef-hpplmn ef-ust ef-fdn ef-sms ef-smsp ef-smss ef-spn ef-est ef-start-hfn ef-threshold ef-psloci ef-acc ef-fplmn ef-loci ef-ad ef-ecc ef-netpar ef-epsloci ef-epsnsc"),
	PEOptUSIM:   words("ef-li ef-acmax ef-acm ef-gid1 ef-gid2 ef-msisdn ef-puct ef-cbmi ef-cbmid ef-sdn ef-ext2 ef-ext3 ef-cbmir ef-plmnwact ef-oplmnwact ef-hplmnwact ef-dck ef-cnl ef-smsr ef-bdn ef-ext5 ef-ccp2 ef-ext4 ef-acl ef-cmi ef-ici ef-oci ef-ict ef-oct ef-vgcs ef-vgcss ef-vbs ef-vbss ef-emlpp ef-aaem ef-hiddenkey ef-pnn ef-opl ef-mbdn ef-ext6 ef-mbi ef-mwis ef-cfis ef-ext7 ef-spdi ef-mmsn ef-ext8 ef-mmsicp ef-mmsup ef-mmsucp ef-nia ef-vgcsca ef-vbsca ef-gbabp ef-msk ef-muk ef-ehplmn ef-gbanl ef-ehplmnpi ef-lrplmnsi ef-nafkca ef-spni ef-pnni ef-ncp-ip ef-ufc ef-nasconfig ef-uicciari ef-pws ef-fdnuri ef-bdnuri ef-sdnuri ef-ial ef-ips ef-ipd ef-epdgid ef-epdgselection ef-epdgidem ef-epdgselectionem ef-frompreferred ef-imsconfigdata ef-3gpppsdataoff ef-3gpppsdataoffservicelist ef-xcapconfigdata ef-earfcnlist ef-mudmidconfigdata ef-eaka"),
	PEPhonebook: words("df-phonebook ef-pbr ef-ext1 ef-aas ef-gas ef-psc ef-cc ef-puid ef-iap ef-adn ef-pbc ef-anr ef-puri ef-email ef-sne ef-uid ef-grp ef-ccp1"),
	PEGSMAccess: words("df-gsm-access ef-kc ef-kcgprs ef-cpbcch ef-invscan"),
	PEDF5GS:     words("df-df-5gs ef-5gs3gpploci ef-5gsn3gpploci ef-5gs3gppnsc ef-5gsn3gppnsc ef-5gauthkeys ef-uac-aic ef-suci-calc-info ef-opl5g ef-supinai ef-routing-indicator ef-ursp ef-tn3gppsnn ef-cag ef-sor-cmci ef-dri ef-5gsedrx ef-5gnswo-conf ef-mchpplmn ef-kausf-derivation"),
	PEDFSAIP:    words("df-df-saip ef-suci-calc-info-usim"),
	PEDFSNPN:    words("df-df-snpn ef-pws-snpn"),
	PEDF5GProSe: words("df-df-5g-prose ef-5g-prose-st ef-5g-prose-dd ef-5g-prose-dc ef-5g-prose-u2nru ef-5g-prose-ru ef-5g-prose-uir"),
	PEISIM:      words("adf-isim ef-impi ef-impu ef-domain ef-ist ef-ad ef-arr"),
	PEOptISIM:   words("ef-pcscf ef-sms ef-smsp ef-smss ef-smsr ef-gbabp ef-gbanl ef-nafkca ef-uicciari ef-frompreferred ef-imsconfigdata ef-xcapconfigdata ef-webrtcuri ef-mudmidconfigdata"),
	PECSIM:      words("adf-csim ef-arr ef-call-count ef-imsi-m ef-imsi-t ef-tmsi ef-ah ef-aop ef-aloc ef-cdmahome ef-znregi ef-snregi ef-distregi ef-accolc ef-term ef-acp ef-prl ef-ruimid ef-csim-st ef-spc ef-otapaspc ef-namlock ef-ota ef-sp ef-esn-meid-me ef-li ef-usgind ef-ad ef-max-prl ef-spcs ef-mecrp ef-home-tag ef-group-tag ef-specific-tag ef-call-prompt"),
	PEOptCSIM:   words("ef-ssci ef-fdn ef-sms ef-smsp ef-smss ef-ssfc ef-spn ef-mdn ef-ecc ef-me3gpdopc ef-3gpdopm ef-sipcap ef-mipcap ef-sipupp ef-mipupp ef-sipsp ef-mipsp ef-sippapss ef-puzl ef-maxpuzl ef-hrpdcap ef-hrpdupp ef-csspr ef-atc ef-eprl ef-bcsmscfg ef-bcsmspref ef-bcsmstable ef-bcsmsp ef-bakpara ef-upbakpara ef-mmsn ef-ext8 ef-mmsicp ef-mmsup ef-mmsucp ef-auth-capability ef-3gcik ef-dck ef-gid1 ef-gid2 ef-cdmacnl ef-sf-euimid ef-est ef-hidden-key ef-lcsver ef-lcscp ef-sdn ef-ext2 ef-ext3 ef-ici ef-oci ef-ext5 ef-ccp2 ef-applabels ef-model ef-rc ef-smscap ef-mipflags ef-3gpduppext ef-ipv6cap ef-tcpconfig ef-dgc ef-wapbrowsercp ef-wapbrowserbm ef-mmsconfig ef-jdl"),
	PEEAP:       words("df-eap ef-eapkeys ef-eapstatus ef-puid ef-ps ef-curid ef-reid ef-realm"),
	PEIoT:       words("mf ef-pl ef-iccid ef-dir ef-arr ef-umpc adf-usim ef-imsi ef-arr-usim ef-keys ef-keysPS ef-hpplmn ef-ust ef-start-hfn ef-threshold ef-psloci ef-acc ef-fplmn ef-loci ef-ad ef-ecc ef-netpar"),
	PEOptIoT:    words("ef-fdn ef-sms ef-smsp ef-smss ef-spn ef-est ef-oplmnwact ef-hplmnwact ef-ehplmn ef-epsloci ef-epsnsc df-df-5gs ef-5gs3gpploci ef-5gsn3gpploci ef-5gs3gppnsc ef-5gsn3gppnsc ef-5gauthkeys ef-uac-aic ef-suci-calc-info ef-opl5g ef-supi-nai ef-routing-indicator ef-ursp ef-tn3gppsnn df-df-saip ef-suci-calc-info-usim"),
}

// mandatoryServices names the NULL flags of the header's ServicesList by
// context tag number (tag 0x80 + n).
var mandatoryServices = words("contactless usim isim csim milenage tuak128 cave gba-usim gba-isim mbms eap javacard multos multiple-usim multiple-isim multiple-csim tuak256 usim-test-algorithm ber-tlv dfLink cat-tp get-identity profile-a-x25519 profile-b-p256 suciCalculatorApi dns-resolution scp11ac scp11c-authorization-mechanism s16mode eaka")

func words(s string) []string { return strings.Fields(s) }

// fsFieldsByType is fsFields as an array, for the decoder's hot loop.
var fsFieldsByType = func() (a [numPETypes][]string) {
	for t, names := range fsFields {
		a[t] = names
	}
	return a
}()

// fileName returns the ASN.1 component name for a file field tag number.
func fileName(t PEType, num int) string {
	names := fsFieldsByType[t]
	if i := num - 2; i >= 0 && i < len(names) {
		return names[i]
	}
	return ""
}

// tagNumber returns the class bits (0x00 universal, 0x40 application,
// 0x80 context, 0xC0 private) and the tag number.
func tagNumber(t Tag) (class byte, num int) { return t.Class(), t.Number() }
