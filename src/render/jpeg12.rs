//! A sequential DCT JPEG decoder (ITU-T T.81 processes 1, 2 and 4: Huffman
//! coded, 8- or 12-bit samples) for what jpeg-decoder refuses: 12-bit lossy
//! JPEG (DICOM JPEG Extended, 1.2.840.10008.1.2.4.51). Components are
//! returned at full resolution (chroma replicated), without colour transform.

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29,
    22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

#[derive(Clone, Default)]
struct Huffman {
    maxcode: [i32; 18],
    valptr: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8], values: &[u8]) -> Huffman {
        let mut h = Huffman { values: values.to_vec(), ..Default::default() };
        let (mut code, mut k) = (0i32, 0i32);
        for l in 1..=16 {
            let n = i32::from(counts[l - 1]);
            if n == 0 {
                h.maxcode[l] = -1;
            } else {
                h.valptr[l] = k;
                h.mincode[l] = code;
                code += n;
                k += n;
                h.maxcode[l] = code - 1;
            }
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX;
        h
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    bw: usize,
    bh: usize,
    coefs: Vec<i32>,
    dc_pred: i32,
}

struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    marker: bool,
}

impl Bits<'_> {
    fn fill(&mut self) {
        while self.n <= 56 {
            let mut byte = 0u8;
            if !self.marker && self.pos < self.b.len() {
                byte = self.b[self.pos];
                if byte == 0xFF {
                    match self.b.get(self.pos + 1) {
                        Some(0) => self.pos += 2,
                        _ => {
                            self.marker = true;
                            byte = 0;
                        }
                    }
                } else {
                    self.pos += 1;
                }
            }
            self.acc |= u64::from(byte) << (56 - self.n);
            self.n += 8;
        }
    }

    fn get(&mut self, k: u32) -> i32 {
        if k == 0 {
            return 0;
        }
        if self.n < k {
            self.fill();
        }
        let v = (self.acc >> (64 - k)) as i32;
        self.acc <<= k;
        self.n -= k;
        v
    }

    fn decode(&mut self, t: &Huffman) -> Result<u8, String> {
        let mut code = 0i32;
        for l in 1..=16 {
            code = (code << 1) | self.get(1);
            if code <= t.maxcode[l] {
                let i = t.valptr[l] + code - t.mincode[l];
                return t.values.get(i as usize).copied().ok_or_else(|| "Huffman code beyond its table".to_string());
            }
        }
        Err("invalid Huffman code".into())
    }

    fn receive_extend(&mut self, s: u8) -> Result<i32, String> {
        if s > 16 {
            return Err(format!("coefficient magnitude category {s}"));
        }
        let s = u32::from(s);
        let v = self.get(s);
        Ok(if s > 0 && v < (1 << (s - 1)) { v - (1 << s) + 1 } else { v })
    }

    /// Skips to after the next RSTn marker and resets the bit buffer.
    fn restart(&mut self) {
        self.acc = 0;
        self.n = 0;
        self.marker = false;
        while self.pos + 1 < self.b.len() {
            if self.b[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.b[self.pos + 1]) {
                self.pos += 2;
                return;
            }
            self.pos += 1;
        }
    }
}

pub fn decode(b: &[u8], rows: u32, cols: u32, samples: u32) -> Result<Vec<i32>, String> {
    let mut qt = [[0u16; 64]; 4];
    let mut dc: [Huffman; 4] = Default::default();
    let mut ac: [Huffman; 4] = Default::default();
    let mut comps: Vec<Component> = Vec::new();
    let (mut precision, mut width, mut height, mut hmax, mut vmax, mut restart) = (8u32, 0usize, 0usize, 1, 1, 0usize);
    let mut pos = 2;
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("no start of image".into());
    }
    loop {
        while pos < b.len() && b[pos] == 0xFF && b.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if pos + 4 > b.len() {
            break;
        }
        if b[pos] != 0xFF {
            return Err(format!("expected a marker at byte {pos}"));
        }
        let m = b[pos + 1];
        if m == 0xD9 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([b[pos + 2], b[pos + 3]]));
        let seg = b.get(pos + 4..pos + 2 + len).ok_or("marker segment runs past the data")?;
        pos += 2 + len;
        match m {
            0xDB => {
                let mut s = seg;
                while !s.is_empty() {
                    let (pq, tq) = (s[0] >> 4, usize::from(s[0] & 15));
                    let n = if pq == 0 { 64 } else { 128 };
                    let t = s.get(1..1 + n).ok_or("short quantization table")?;
                    let q = qt.get_mut(tq).ok_or("quantization table id")?;
                    for i in 0..64 {
                        q[i] = if pq == 0 { u16::from(t[i]) } else { u16::from_be_bytes([t[2 * i], t[2 * i + 1]]) };
                    }
                    s = &s[1 + n..];
                }
            }
            0xC4 => {
                let mut s = seg;
                while s.len() >= 17 {
                    let (tc, th) = (s[0] >> 4, usize::from(s[0] & 15));
                    let counts = &s[1..17];
                    let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
                    let values = s.get(17..17 + total).ok_or("short Huffman table")?;
                    let t = Huffman::new(counts, values);
                    match (tc, th) {
                        (0, 0..=3) => dc[th] = t,
                        (1, 0..=3) => ac[th] = t,
                        _ => return Err("Huffman table id".into()),
                    }
                    s = &s[17 + total..];
                }
            }
            0xDD if seg.len() >= 2 => restart = usize::from(u16::from_be_bytes([seg[0], seg[1]])),
            0xC0 | 0xC1 => {
                if seg.len() < 6 {
                    return Err("short frame header".into());
                }
                precision = u32::from(seg[0]);
                height = usize::from(u16::from_be_bytes([seg[1], seg[2]]));
                width = usize::from(u16::from_be_bytes([seg[3], seg[4]]));
                let nf = usize::from(seg[5]);
                if height != rows as usize || width != cols as usize || nf != samples as usize || !(precision == 8 || precision == 12) {
                    return Err(format!("frame {width}×{height}, {nf} components, {precision} bits: not what the header says"));
                }
                for i in 0..nf {
                    let c = seg.get(6 + 3 * i..9 + 3 * i).ok_or("short frame header")?;
                    let (h, v) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
                        return Err("bad sampling factors or table id".into());
                    }
                    comps.push(Component { id: c[0], h, v, tq: usize::from(c[2]), bw: 0, bh: 0, coefs: Vec::new(), dc_pred: 0 });
                }
                hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
                vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
                let (mx, my) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
                for c in &mut comps {
                    c.bw = mx * c.h;
                    c.bh = my * c.v;
                    c.coefs = vec![0; c.bw * c.bh * 64];
                }
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Err(format!("JPEG process of marker FF{m:02X} is not supported for 12-bit data")),
            0xDA => {
                if comps.is_empty() {
                    return Err("scan before frame header".into());
                }
                let ns = usize::from(*seg.first().ok_or("short scan header")?);
                let mut sel = Vec::new();
                for i in 0..ns {
                    let c = seg.get(1 + 2 * i..3 + 2 * i).ok_or("short scan header")?;
                    let k = comps.iter().position(|x| x.id == c[0]).ok_or("scan names an unknown component")?;
                    sel.push((k, usize::from(c[1] >> 4) & 3, usize::from(c[1] & 15) & 3));
                }
                let mut bits = Bits { b, pos, acc: 0, n: 0, marker: false };
                scan(&mut bits, &mut comps, &sel, &dc, &ac, &qt, width, height, hmax, vmax, restart)?;
                // Continue at the marker that ended the entropy-coded data.
                pos = bits.pos;
                while pos + 1 < b.len() && !(b[pos] == 0xFF && b[pos + 1] != 0 && !(0xD0..=0xD7).contains(&b[pos + 1])) {
                    pos += 1;
                }
            }
            _ => {}
        }
    }
    if comps.is_empty() {
        return Err("no frame header".into());
    }
    Ok(output(&comps, width, height, hmax, vmax, precision))
}

#[allow(clippy::too_many_arguments)]
fn scan(
    bits: &mut Bits<'_>,
    comps: &mut [Component],
    sel: &[(usize, usize, usize)],
    dc: &[Huffman; 4],
    ac: &[Huffman; 4],
    qt: &[[u16; 64]; 4],
    width: usize,
    height: usize,
    hmax: usize,
    vmax: usize,
    restart: usize,
) -> Result<(), String> {
    for c in comps.iter_mut() {
        c.dc_pred = 0;
    }
    let block = |bits: &mut Bits<'_>, c: &mut Component, td: usize, ta: usize, bx: usize, by: usize| -> Result<(), String> {
        let q = &qt[c.tq];
        let t = bits.decode(&dc[td])?;
        c.dc_pred = c.dc_pred.wrapping_add(bits.receive_extend(t)?);
        let off = (by * c.bw + bx) * 64;
        let out = &mut c.coefs[off..off + 64];
        out[0] = c.dc_pred.wrapping_mul(i32::from(q[0]));
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(&ac[ta])?;
            let (r, s) = (usize::from(rs >> 4), rs & 15);
            if s == 0 {
                if r != 15 {
                    break;
                }
                k += 16;
                continue;
            }
            k += r;
            if k > 63 {
                return Err("AC coefficient beyond the block".into());
            }
            out[ZIGZAG[k]] = bits.receive_extend(s)?.wrapping_mul(i32::from(q[k]));
            k += 1;
        }
        Ok(())
    };
    let mut unit = 0usize;
    let mut check_restart = |bits: &mut Bits<'_>, comps: &mut [Component]| {
        if restart > 0 && unit > 0 && unit.is_multiple_of(restart) {
            bits.restart();
            for c in comps.iter_mut() {
                c.dc_pred = 0;
            }
        }
        unit += 1;
    };
    if sel.len() == 1 {
        let (k, td, ta) = sel[0];
        let c = &comps[k];
        let (w, h) = ((width * c.h).div_ceil(hmax).div_ceil(8), (height * c.v).div_ceil(vmax).div_ceil(8));
        for by in 0..h {
            for bx in 0..w {
                check_restart(bits, comps);
                block(bits, &mut comps[k], td, ta, bx, by)?;
            }
        }
    } else {
        let (mx, my) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
        for my_ in 0..my {
            for mx_ in 0..mx {
                check_restart(bits, comps);
                for &(k, td, ta) in sel {
                    let (h, v) = (comps[k].h, comps[k].v);
                    for y in 0..v {
                        for x in 0..h {
                            block(bits, &mut comps[k], td, ta, mx_ * h + x, my_ * v + y)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn output(comps: &[Component], width: usize, height: usize, hmax: usize, vmax: usize, precision: u32) -> Vec<i32> {
    let mut cos = [[0f32; 8]; 8];
    for (x, row) in cos.iter_mut().enumerate() {
        for (u, c) in row.iter_mut().enumerate() {
            let cu = if u == 0 { std::f32::consts::FRAC_1_SQRT_2 } else { 1.0 };
            *c = cu / 2.0 * (((2 * x + 1) * u) as f32 * std::f32::consts::PI / 16.0).cos();
        }
    }
    let (shift, max) = ((1i32 << (precision - 1)) as f32, (1i32 << precision) - 1);
    // Spatial samples of each component, block by block.
    let planes: Vec<(Vec<i32>, usize)> = comps
        .iter()
        .map(|c| {
            let pw = c.bw * 8;
            let mut p = vec![0i32; pw * c.bh * 8];
            let mut tmp = [0f32; 64];
            for by in 0..c.bh {
                for bx in 0..c.bw {
                    let f = &c.coefs[(by * c.bw + bx) * 64..][..64];
                    for v in 0..8 {
                        for x in 0..8 {
                            tmp[v * 8 + x] = (0..8).map(|u| f[v * 8 + u] as f32 * cos[x][u]).sum();
                        }
                    }
                    for y in 0..8 {
                        for x in 0..8 {
                            let s: f32 = (0..8).map(|v| tmp[v * 8 + x] * cos[y][v]).sum();
                            p[(by * 8 + y) * pw + bx * 8 + x] = ((s + shift).round() as i32).clamp(0, max);
                        }
                    }
                }
            }
            (p, pw)
        })
        .collect();
    let mut out = Vec::with_capacity(width * height * comps.len());
    for y in 0..height {
        for x in 0..width {
            for (c, (p, pw)) in comps.iter().zip(&planes) {
                out.push(p[(y * c.v / vmax) * pw + x * c.h / hmax]);
            }
        }
    }
    out
}
