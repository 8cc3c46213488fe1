//! CBC encryption of many tokens side by side. CBC is serial within one token: each
//! block waits for the ciphertext of the block before it, so one token keeps the AES
//! unit a fraction busy (one round's latency per step, ten rounds per block). Blocks of
//! different tokens do not wait for each other: with eight chains interleaved, eight
//! blocks go through the AES unit's pipeline together. On this project's 2-core VM
//! (AES-NI), a scratch benchmark of 512 KiB bodies did 1.1 GB/s one at a time; eight
//! at a time 2.5-3.6 GB/s through `encrypt_blocks` per step and 4.4-5.5 GB/s with the
//! steps run inside the backend (four: 2.1-2.4 against 3.1-3.2 GB/s), in the same runs.
//! The ciphertext is the same as one token at a time; a unit test checks it against
//! the `cbc` crate.

use aes::cipher::consts::U16;
use aes::cipher::{
    BlockBackend, BlockClosure, BlockEncrypt, BlockEncryptMut, BlockSizeUser, InnerIvInit,
    ParBlocks,
};
use aes::{Aes128, Block};

/// Chains encrypted side by side: the AES-NI backend's batch of parallel blocks.
pub(crate) const LANES: usize = 8;

/// A token body being encrypted: the previous ciphertext block (the IV at first) and
/// the plaintext blocks still to go.
struct Lane<'b> {
    chain: Block,
    rest: &'b mut [u8],
}

/// CBC-encrypts each body in place with its IV. A body is whole blocks (padded
/// already); a trailing partial block is left as it is.
pub(super) fn encrypt<'b>(
    cipher: &Aes128,
    mut bodies: impl Iterator<Item = ([u8; 16], &'b mut [u8])>,
) {
    let mut lanes: Vec<Lane<'b>> = Vec::with_capacity(LANES);
    loop {
        while lanes.len() < LANES {
            match bodies.next() {
                Some((iv, rest)) if rest.len() >= 16 => lanes.push(Lane {
                    chain: iv.into(),
                    rest,
                }),
                Some(_) => {}
                None => break,
            }
        }
        match lanes.len() {
            0 => return,
            // Alone, a chain gains nothing from the batch: the serial path is faster.
            1 => {
                let Lane { chain, rest } = lanes.pop().expect("one lane");
                encrypt_one(cipher, chain, rest);
                continue;
            }
            _ => {}
        }
        // Every lane advances this many blocks before one of them runs out.
        let steps = lanes.iter().map(|l| l.rest.len() / 16).min().unwrap_or(0);
        cipher.encrypt_with_backend(Steps {
            lanes: &mut lanes,
            steps,
        });
        lanes.retain(|l| l.rest.len() >= 16);
    }
}

/// `steps` blocks of every lane, run inside the backend: one dispatch for the whole
/// run, where `encrypt_blocks` per step paid a CPU-feature check, the cutting of the
/// slice into batches and a call for every eight blocks.
struct Steps<'a, 'b> {
    lanes: &'a mut [Lane<'b>],
    steps: usize,
}

impl BlockSizeUser for Steps<'_, '_> {
    type BlockSize = U16;
}

impl BlockClosure for Steps<'_, '_> {
    fn call<B: BlockBackend<BlockSize = U16>>(self, backend: &mut B) {
        let Steps { lanes, steps } = self;
        let mut blocks = ParBlocks::<B>::default();
        let end = steps * 16;
        // As many lanes as the backend takes at once (all of them with AES-NI).
        for group in lanes.chunks_mut(blocks.len()) {
            for at in (0..end).step_by(16) {
                for (lane, block) in group.iter().zip(blocks.iter_mut()) {
                    let plain = &lane.rest[at..at + 16];
                    for ((b, p), c) in block.iter_mut().zip(plain).zip(&lane.chain) {
                        *b = p ^ c;
                    }
                }
                // The whole batch, whatever the number of lanes: the backend pipelines
                // only whole batches, and the unused blocks cost less than a serial pass.
                backend.proc_par_blocks((&mut blocks).into());
                for (lane, block) in group.iter_mut().zip(blocks.iter()) {
                    lane.rest[at..at + 16].copy_from_slice(block);
                    lane.chain = *block;
                }
            }
        }
        for lane in lanes.iter_mut() {
            lane.rest = &mut std::mem::take(&mut lane.rest)[end..];
        }
    }
}

/// One body, the serial way.
fn encrypt_one(cipher: &Aes128, iv: Block, body: &mut [u8]) {
    let whole = body.len() / 16 * 16;
    let mut enc = cbc::Encryptor::<Aes128>::inner_iv_init(cipher.clone(), &iv);
    for block in body[..whole].chunks_exact_mut(16) {
        enc.encrypt_block_mut(Block::from_mut_slice(block));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{block_padding::NoPadding, KeyInit, KeyIvInit};

    /// Bodies of many lengths (ending at different steps, one alone at the end) give
    /// what the `cbc` crate gives one at a time.
    #[test]
    fn the_same_ciphertext_as_one_token_at_a_time() {
        let key = [7u8; 16];
        let cipher = Aes128::new(&key.into());
        let lens = [
            16usize,
            0,
            4096,
            32,
            160,
            16,
            65536,
            48,
            1024,
            16,
            16,
            16,
            512,
            1 << 20,
        ];
        let bodies: Vec<(Vec<u8>, [u8; 16])> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (
                    (0..n).map(|j| (j * 31 + i) as u8).collect(),
                    [i as u8 + 1; 16],
                )
            })
            .collect();
        let expected: Vec<Vec<u8>> = bodies
            .iter()
            .map(|(plain, iv)| {
                let mut buf = plain.clone();
                let len = buf.len();
                cbc::Encryptor::<Aes128>::new(&key.into(), iv.into())
                    .encrypt_padded_mut::<NoPadding>(&mut buf, len)
                    .unwrap();
                buf
            })
            .collect();
        for take in [1, 2, 3, 8, 9, lens.len()] {
            let mut got = bodies.clone();
            encrypt(
                &cipher,
                got.iter_mut().take(take).map(|(b, iv)| (*iv, &mut b[..])),
            );
            for (i, ((body, _), want)) in got.iter().zip(&expected).enumerate().take(take) {
                assert_eq!(body, want, "body {i} (of the first {take})");
            }
        }
    }
}
