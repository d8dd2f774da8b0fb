package perso

import (
	"encoding/binary"
	"fmt"
)

// Arrow IPC metadata is a FlatBuffer, and Arrow's Go library reads it
// without checking it: it sizes slices by the vector lengths it finds (a
// schema declaring 2³² fields makes it allocate hundreds of gigabytes,
// which no recover can catch) and loops over them. checkMessageMeta and
// checkFooterMeta walk the parts of the metadata the library reads, as it
// reads them, and refuse any table, string or vector that does not lie
// within the metadata; the library then sees only lengths bounded by its
// input. Field slots and union type numbers are those of Arrow's
// Message.fbs, Schema.fbs and File.fbs (format version 5).

// fbTable is a FlatBuffer table at pos of b, its vtable checked.
type fbTable struct {
	m     *fbMeta
	pos   int64
	vt    int64 // vtable position
	vtLen int64
}

// fbMeta walks one metadata buffer, bounding the work a DAG of shared
// tables could make it do.
type fbMeta struct {
	b      []byte
	tables int
}

const (
	fbMaxTables = 1 << 16 // tables visited per metadata buffer
	fbMaxDepth  = 64      // nesting of fields (children)
)

func (m *fbMeta) u32(p int64) (uint32, error) {
	if p < 0 || p+4 > int64(len(m.b)) {
		return 0, fmt.Errorf("%w: metadata offset %d outside its %d bytes", errCorruptIPC, p, len(m.b))
	}
	return binary.LittleEndian.Uint32(m.b[p:]), nil
}

func (m *fbMeta) u16(p int64) (int64, error) {
	if p < 0 || p+2 > int64(len(m.b)) {
		return 0, fmt.Errorf("%w: metadata offset %d outside its %d bytes", errCorruptIPC, p, len(m.b))
	}
	return int64(binary.LittleEndian.Uint16(m.b[p:])), nil
}

// table checks the table at pos and its vtable.
func (m *fbMeta) table(pos int64) (fbTable, error) {
	if m.tables++; m.tables > fbMaxTables {
		return fbTable{}, fmt.Errorf("%w: metadata with more than %d tables", errCorruptIPC, fbMaxTables)
	}
	so, err := m.u32(pos)
	if err != nil {
		return fbTable{}, err
	}
	vt := pos - int64(int32(so))
	vtLen, err := m.u16(vt)
	if err != nil {
		return fbTable{}, err
	}
	if vtLen < 4 || vt+vtLen > int64(len(m.b)) {
		return fbTable{}, fmt.Errorf("%w: metadata vtable of %d bytes at %d", errCorruptIPC, vtLen, vt)
	}
	tblLen, err := m.u16(vt + 2)
	if err != nil {
		return fbTable{}, err
	}
	if pos+tblLen > int64(len(m.b)) {
		return fbTable{}, fmt.Errorf("%w: metadata table of %d bytes at %d", errCorruptIPC, tblLen, pos)
	}
	return fbTable{m: m, pos: pos, vt: vt, vtLen: vtLen}, nil
}

// root checks the root table of the buffer.
func (m *fbMeta) root() (fbTable, error) {
	off, err := m.u32(0)
	if err != nil {
		return fbTable{}, err
	}
	return m.table(int64(off))
}

// field returns the position of slot's value, or 0 when it is absent.
func (t fbTable) field(slot int) (int64, error) {
	o := int64(4 + 2*slot)
	if o+2 > t.vtLen {
		return 0, nil
	}
	off, err := t.m.u16(t.vt + o)
	if err != nil || off == 0 {
		return 0, err
	}
	return t.pos + off, nil
}

// ref returns the position an offset field of slot points at (0: absent).
func (t fbTable) ref(slot int) (int64, error) {
	p, err := t.field(slot)
	if err != nil || p == 0 {
		return 0, err
	}
	off, err := t.m.u32(p)
	if err != nil {
		return 0, err
	}
	return p + int64(off), nil
}

// sub checks the table field of slot; ok is false when absent.
func (t fbTable) sub(slot int) (fbTable, bool, error) {
	p, err := t.ref(slot)
	if err != nil || p == 0 {
		return fbTable{}, false, err
	}
	st, err := t.m.table(p)
	return st, err == nil, err
}

// vector checks the vector (or string: elem 1) of slot and returns the
// position of its first element and its length.
func (t fbTable) vector(slot int, elem int64) (start, n int64, err error) {
	p, err := t.ref(slot)
	if err != nil || p == 0 {
		return 0, 0, err
	}
	ln, err := t.m.u32(p)
	if err != nil {
		return 0, 0, err
	}
	n = int64(ln)
	if p+4+n*elem > int64(len(t.m.b)) {
		return 0, 0, fmt.Errorf("%w: metadata vector of %d elements at %d beyond its %d bytes", errCorruptIPC, n, p, len(t.m.b))
	}
	return p + 4, n, nil
}

// tables checks a vector of tables, and each with check.
func (t fbTable) tables(slot int, check func(fbTable) error) error {
	start, n, err := t.vector(slot, 4)
	if err != nil {
		return err
	}
	for i := range n {
		p := start + 4*i
		off, err := t.m.u32(p)
		if err != nil {
			return err
		}
		et, err := t.m.table(p + int64(off))
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(et); err != nil {
				return err
			}
		}
	}
	return nil
}

// Message.fbs: Message { version, header_type, header, bodyLength, custom_metadata }.
func checkMessageMeta(meta []byte) error {
	m := &fbMeta{b: meta}
	msg, err := m.root()
	if err != nil {
		return err
	}
	if err := msg.tables(4, checkKeyValue); err != nil {
		return err
	}
	hp, err := msg.field(1)
	if err != nil || hp == 0 {
		return err
	}
	if hp >= int64(len(meta)) {
		return fmt.Errorf("%w: message header type outside the metadata", errCorruptIPC)
	}
	h, ok, err := msg.sub(2)
	if err != nil || !ok {
		return err
	}
	switch meta[hp] {
	case 1: // Schema
		return checkSchema(h)
	case 2: // DictionaryBatch { id, data: RecordBatch, isDelta }
		rb, ok, err := h.sub(1)
		if err != nil || !ok {
			return err
		}
		return checkRecordBatch(rb)
	case 3:
		return checkRecordBatch(h)
	}
	return nil // other headers are refused by the library
}

// File.fbs: Footer { version, schema, dictionaries: [Block], recordBatches: [Block], custom_metadata }.
func checkFooterMeta(meta []byte) error {
	m := &fbMeta{b: meta}
	f, err := m.root()
	if err != nil {
		return err
	}
	if s, ok, err := f.sub(1); err != nil {
		return err
	} else if ok {
		if err := checkSchema(s); err != nil {
			return err
		}
	}
	for _, slot := range []int{2, 3} {
		if _, _, err := f.vector(slot, 24); err != nil { // Block: offset, metaDataLength (+pad), bodyLength
			return err
		}
	}
	return f.tables(4, checkKeyValue)
}

// Schema { endianness, fields: [Field], custom_metadata, features: [long] }.
func checkSchema(s fbTable) error {
	if err := s.tables(1, func(f fbTable) error { return checkField(f, 0) }); err != nil {
		return err
	}
	if err := s.tables(2, checkKeyValue); err != nil {
		return err
	}
	_, _, err := s.vector(3, 8)
	return err
}

// Field { name, nullable, type_type, type, dictionary, children: [Field], custom_metadata }.
func checkField(f fbTable, depth int) error {
	if depth > fbMaxDepth {
		return fmt.Errorf("%w: fields nested more than %d deep", errCorruptIPC, fbMaxDepth)
	}
	if _, _, err := f.vector(0, 1); err != nil {
		return err
	}
	if tp, err := f.field(2); err != nil {
		return err
	} else if tp != 0 {
		if tp >= int64(len(f.m.b)) {
			return fmt.Errorf("%w: field type outside the metadata", errCorruptIPC)
		}
		typ, ok, err := f.sub(3)
		if err != nil {
			return err
		}
		if ok {
			switch f.m.b[tp] {
			case 10: // Timestamp { unit, timezone }
				if _, _, err := typ.vector(1, 1); err != nil {
					return err
				}
			case 14: // Union { mode, typeIds: [int] }
				if _, _, err := typ.vector(1, 4); err != nil {
					return err
				}
			}
		}
	}
	if d, ok, err := f.sub(4); err != nil { // DictionaryEncoding { id, indexType: Int, ... }
		return err
	} else if ok {
		if _, _, err := d.sub(1); err != nil {
			return err
		}
	}
	if err := f.tables(5, func(c fbTable) error { return checkField(c, depth+1) }); err != nil {
		return err
	}
	return f.tables(6, checkKeyValue)
}

// KeyValue { key, value }.
func checkKeyValue(kv fbTable) error {
	for _, slot := range []int{0, 1} {
		if _, _, err := kv.vector(slot, 1); err != nil {
			return err
		}
	}
	return nil
}

// RecordBatch { length, nodes: [FieldNode], buffers: [Buffer], compression, variadicBufferCounts: [long] }.
func checkRecordBatch(rb fbTable) error {
	for _, v := range []struct {
		slot int
		elem int64
	}{{1, 16}, {2, 16}, {4, 8}} {
		if _, _, err := rb.vector(v.slot, v.elem); err != nil {
			return err
		}
	}
	_, _, err := rb.sub(3)
	return err
}
