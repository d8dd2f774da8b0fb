package template

import (
	"fmt"

	"github.com/perso-esim/perso/esim/tlv"
)

// MaxDepth bounds the nesting of constructed elements the decoder follows.
// SAIP needs 6 (genericFileManagement → command list → command → FCP →
// proprietary info); anything deeper is rejected so that hostile input
// cannot exhaust the stack.
const MaxDepth = 32

// maxLength bounds a single length field: the one limit of esim/tlv.
const maxLength = tlv.MaxLength

// Tag is a BER tag, its identifier octets read as a big-endian number
// (esim/tlv's Tag: 0xA0 for [0] constructed, 0xBF22 for [34] constructed).
type Tag = tlv.Tag

// tlvError is a position-only syntax error; the caller adds the PE context.
type tlvError = tlv.HeaderError

// headerErr recovers the located syntax error from esim/tlv's readers,
// whose errors are always *tlv.HeaderError.
func headerErr(err error) *tlvError { return err.(*tlv.HeaderError) }

// lenSize is the number of octets a DER length takes.
func lenSize(l int) int { return tlv.LenSize(l) }

func appendLen(dst []byte, l int) []byte { return tlv.AppendLen(dst, l) }

// Node is one element of the decoded DER tree. Primitive elements carry
// Value; constructed elements carry Children, unless they are opaque (kept
// as raw content, as for unknown PEs), in which case Value holds the content
// octets. Nodes produced by Decode point into the profile's private copy of
// the input; Offset and HeaderLen locate them there.
type Node struct {
	Tag       Tag
	HeaderLen uint8 // tag + length octets in the source
	Opaque    bool  // constructed, but content kept as raw bytes
	Offset    int   // absolute offset of the first tag octet; -1 for built nodes
	SourceLen int32 // content length in the source
	size      int32 // scratch for Encode: encoded content length
	Value     []byte
	Children  []*Node
}

// ValueOffset is the absolute offset of the first content octet.
func (n *Node) ValueOffset() int { return n.Offset + int(n.HeaderLen) }

// End is the absolute offset just past the element in the source.
func (n *Node) End() int { return n.Offset + int(n.HeaderLen) + int(n.SourceLen) }

// Child returns the first direct child with the given tag, or nil.
func (n *Node) Child(t Tag) *Node {
	if n == nil {
		return nil
	}
	for _, c := range n.Children {
		if c.Tag == t {
			return c
		}
	}
	return nil
}

// SetValue replaces the content of a primitive node (the slice is copied).
// The change is picked up by the next Encode.
func (n *Node) SetValue(v []byte) { n.Value = append([]byte(nil), v...) }

// measure computes and caches encoded content sizes bottom-up; returns the
// size of the whole TLV.
func (n *Node) measure() int {
	if n.Tag.Constructed() && !n.Opaque {
		s := 0
		for _, c := range n.Children {
			s += c.measure()
		}
		n.size = int32(s)
	} else {
		n.size = int32(len(n.Value))
	}
	return n.Tag.Len() + lenSize(int(n.size)) + int(n.size)
}

// appendEncoded writes the TLV using sizes cached by measure.
func (n *Node) appendEncoded(dst []byte) []byte {
	dst = n.Tag.Append(dst)
	dst = appendLen(dst, int(n.size))
	if n.Tag.Constructed() && !n.Opaque {
		for _, c := range n.Children {
			dst = c.appendEncoded(dst)
		}
		return dst
	}
	return append(dst, n.Value...)
}

// Encode returns the DER encoding of the subtree.
func (n *Node) Encode() []byte {
	sz := n.measure()
	return n.appendEncoded(make([]byte, 0, sz))
}

// nodeArena hands out Nodes and child slices in chunks to keep the decoder
// from making one allocation per element.
type nodeArena struct {
	nodes []Node
	ptrs  []*Node
	next  int // size of the next node chunk
}

func (a *nodeArena) node() *Node {
	if len(a.nodes) == cap(a.nodes) {
		n := a.next
		if n < 64 {
			n = 64
		}
		a.nodes = make([]Node, 0, n)
		a.next = 256
	}
	a.nodes = a.nodes[:len(a.nodes)+1]
	return &a.nodes[len(a.nodes)-1]
}

// children returns a zeroed slice of k child pointers.
func (a *nodeArena) children(k int) []*Node {
	if k == 0 {
		return nil
	}
	if cap(a.ptrs)-len(a.ptrs) < k {
		a.ptrs = make([]*Node, 0, max(k, 1024))
	}
	start := len(a.ptrs)
	a.ptrs = a.ptrs[:start+k]
	return a.ptrs[start : start+k : start+k]
}

// treeParser decodes a TLV and, recursively, the content of constructed
// elements.
type treeParser struct {
	b     []byte
	arena *nodeArena
	// Elements with tag opaqueTag at depth opaqueDepth are kept as raw
	// content (FCPs: see FCP).
	opaqueDepth int
	opaqueTag   Tag
}

func (p *treeParser) parseNode(off, end, depth int) (*Node, *tlvError) {
	t, hl, vl, err := tlv.ReadHeaderFast(p.b, off, end)
	if err != nil {
		return nil, headerErr(err)
	}
	n := p.arena.node()
	n.Tag, n.Offset, n.HeaderLen, n.SourceLen = t, off, uint8(hl), int32(vl)
	vs := off + hl
	if !t.Constructed() || (depth == p.opaqueDepth && t == p.opaqueTag) {
		n.Value = p.b[vs : vs+vl : vs+vl]
		n.Opaque = t.Constructed()
		return n, nil
	}
	if depth >= MaxDepth {
		return nil, &tlvError{Offset: off, Tag: t, Err: fmt.Errorf("tag %s: %w", t, ErrTooDeep)}
	}
	// Count the children (headers only), then parse each straight into
	// its slot: no scratch stack, one pointer store per child. If the count
	// stops at a bad header, parsing stops at the same one with an error.
	k := 0
	for q := vs; q < vs+vl; k++ {
		_, chl, cvl, err := tlv.ReadHeaderFast(p.b, q, vs+vl)
		if err != nil {
			break
		}
		q += chl + cvl
	}
	kids := p.arena.children(k)
	for q, i := vs, 0; q < vs+vl; i++ {
		c, err := p.parseNode(q, vs+vl, depth+1)
		if err != nil {
			return nil, err
		}
		kids[i] = c
		q = c.End()
	}
	n.Children = kids
	return n, nil
}
