"""A paged KV cache: keys and values in fixed-size blocks of a bounded pool (r1kit.inference.block_pool),
which sequences share by reference (a common prompt prefix, the n samples of one request).

Each forward names its rows' blocks (`bind`: one block list per row); the model then sees the
cache through the same three calls as the static KVCache (`start`, `update`, `visible_symbols`):
`update` writes the new tokens into their blocks and hands back each row's visible keys and
values gathered into a contiguous [B, G, S, D] tensor.

The trade-off, measured (benchmarks/memory_reuse.py, docs/benchmarks.md): the gather copies every
visible key and value once per layer per forward, where the static cache hands out a slice of
its rows. Multi-scale attention reads every visible key (global top-k, the symbolic branch), so
attention that read blocks in place would need its own kernel for all three branches. On a CPU
with small models the copy is a small part of a decode step (weights, norms and Python dominate),
so the gather keeps the model's attention code unchanged and pays for it in copy time, while
memory holds one copy of each shared block instead of one per row: the engine holds only the
blocks in use (storage grows on demand, lowest block ids first), where the static cache holds
every row at its request's whole length.

Padding tokens of a ragged prefill (and any position past a row's blocks) write into a scratch
block, storage index 0, that no row's queries can see: a row's causal mask stops at its own
position, and its blocks cover every position up to it.

Shape legend: L layers, N storage blocks (pool blocks + the scratch block), K tokens a block,
G key/value heads, D head dim, B rows, M blocks per row in this forward, T new tokens, S visible slots.
"""

from __future__ import annotations

import torch

from r1kit.inference.block_pool import BlockPool
from r1kit.model.kernels import paged_decode

SCRATCH = 0  # storage index of the scratch block; pool block b lives at storage index b + 1


class PagedKVCache:
    def __init__(self, model, num_blocks: int, block_size: int, dtype: torch.dtype | None = None, decode_kernel: bool = True):
        cfg = model.config
        param = next(model.parameters())
        self.pool = BlockPool(num_blocks, block_size)
        self.block_size = block_size
        self.n_layers, self.n_kv_heads, self.head_dim = cfg.n_layers, cfg.kv_heads, cfg.head_dim
        self.dtype, self.device = dtype or param.dtype, param.device
        # decode reads blocks in place (C++, fp32 on a CPU) instead of gathering them, where it can
        self.decode_kernel = (decode_kernel and self.dtype == torch.float32 and self.device.type == "cpu"
                              and paged_decode.available())
        self._allocated = 0  # storage blocks allocated (scratch included); grows with the highest block in use
        # keys and values of a token side by side ([.., 2, G, D]): one write and one gather per layer
        self.kv_LNK2GD = self.symbol_NK = None
        self._grow(1)
        self.length = 0  # visible slots in the current forward (the model's KVCacheLike contract)
        self._table_BM: torch.Tensor | None = None
        self._real_end_B: torch.Tensor | None = None
        self._write_BT: torch.Tensor | None = None  # flat storage slot of each new token

    # ------------------------------------------------------------------ storage

    @property
    def bytes_per_block(self) -> int:
        return 2 * self.n_layers * self.block_size * self.n_kv_heads * self.head_dim * self.kv_LNK2GD.element_size()

    @property
    def allocated_bytes(self) -> int:
        """Key and value storage held now (scratch block included)."""
        return self._allocated * self.bytes_per_block

    def _grow(self, storage_blocks: int) -> None:
        """Hold at least `storage_blocks` storage blocks (growing by a quarter, and by 16 blocks at
        least, so copies stay rare and the storage stays within ~25% of the highest block in use;
        capped at the pool plus scratch)."""
        if storage_blocks <= self._allocated:
            return
        new = min(self.pool.num_blocks + 1, max(storage_blocks, self._allocated + max(16, self._allocated // 4)))
        L, K, G, D = self.n_layers, self.block_size, self.n_kv_heads, self.head_dim
        kv = torch.zeros((L, new, K, 2, G, D), dtype=self.dtype, device=self.device)
        symbol = torch.zeros((new, K), dtype=torch.bool, device=self.device)
        if self._allocated:
            kv[:, : self._allocated] = self.kv_LNK2GD
            symbol[: self._allocated] = self.symbol_NK
        self.kv_LNK2GD, self.symbol_NK, self._allocated = kv, symbol, new

    def allocate(self, n: int) -> list[int]:
        """`n` pool blocks (BlockPool.allocate), with storage for them."""
        blocks = self.pool.allocate(n)
        if blocks:
            self._grow(max(blocks) + 2)
        return blocks

    def writable(self, block: int) -> int:
        """The block a sequence holding `block` may write into: itself, or a copy of it when it is
        shared or cached (copy-on-write, BlockPool.writable). May raise PoolExhausted."""
        new, copy = self.pool.writable(block)
        if copy:
            self._grow(new + 2)
            self.kv_LNK2GD[:, new + 1] = self.kv_LNK2GD[:, block + 1]
            self.symbol_NK[new + 1] = self.symbol_NK[block + 1]
        return new

    # ------------------------------------------------------------------ one forward

    def bind(self, blocks_per_row: list[list[int]], real_end: list[int], decode: bool = False) -> None:
        """Set up the next forward: row b's blocks in order, and the end of its real tokens (its
        positions at or past `real_end[b]` are padding: written to scratch, never seen). `decode`:
        each row writes one token, at real_end - 1 (its slots are worked out here, in Python, which
        is cheaper than the tensor arithmetic of `start` for one token a row)."""
        K = self.block_size
        S = max(real_end)
        M = max(1, -(-S // K))
        table = [[b + 1 for b in blocks[:M]] + [SCRATCH] * (M - len(blocks[:M])) for blocks in blocks_per_row]
        self._table_BM = torch.tensor(table, dtype=torch.long, device=self.device)
        self._table_flat = self._table_BM.view(-1)  # the gather's index: row b's blocks, then row b+1's
        self._real_end_B = torch.tensor(real_end, dtype=torch.long, device=self.device)
        self._decode_write_B1 = None
        if decode:
            slots = [(blocks[(end - 1) // K] + 1) * K + (end - 1) % K for blocks, end in zip(blocks_per_row, real_end)]
            self._decode_write_B1 = torch.tensor(slots, dtype=torch.long, device=self.device)[:, None]
        self.length = 0  # nothing visible before this forward's own writes (see the model's `standard` path)

    def start(self, positions_BT: torch.Tensor, is_symbol_BT: torch.Tensor) -> None:
        B, T = positions_BT.shape
        if self._table_BM is None or self._table_BM.shape[0] != B:
            raise ValueError(f"bind() the {B} rows' blocks before each forward")
        K, M = self.block_size, self._table_BM.shape[1]
        if self._decode_write_B1 is not None and T == 1:
            self._write_BT = self._decode_write_B1
        else:
            real_BT = positions_BT < self._real_end_B[:, None]
            block_BT = self._table_BM.gather(1, (positions_BT // K).clamp(max=M - 1))
            block_BT = torch.where(real_BT, block_BT, SCRATCH)
            self._write_BT = block_BT * K + positions_BT % K
        self.symbol_NK.view(-1)[self._write_BT] = is_symbol_BT
        self.length = int(self._real_end_B.max())

    def narrow(self, rows_N: torch.Tensor) -> None:
        """For the rest of this forward, only these of the rows still running (some left at an
        early exit): later layers write and read theirs alone (KVCacheLike; the next `bind` ends it)."""
        self._table_BM = self._table_BM.index_select(0, rows_N)
        self._table_flat = self._table_BM.view(-1)
        self._real_end_B = self._real_end_B.index_select(0, rows_N)
        self._write_BT = self._write_BT.index_select(0, rows_N)
        if self._decode_write_B1 is not None:
            self._decode_write_B1 = self._decode_write_B1.index_select(0, rows_N)

    def _write(self, layer: int, k_BGTD: torch.Tensor, v_BGTD: torch.Tensor) -> None:
        """This forward's keys and values into their blocks' slots ([B, T, 2, G, D] as written)."""
        kv_flat = self.kv_LNK2GD[layer].view(-1, 2, self.n_kv_heads, self.head_dim)
        kv_flat[self._write_BT] = torch.stack([k_BGTD, v_BGTD], dim=2).transpose(1, 3).to(self.dtype)

    def update(self, layer: int, k_BGTD: torch.Tensor, v_BGTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, S = self._table_BM.shape[0], self.length
        G, D = self.n_kv_heads, self.head_dim
        self._write(layer, k_BGTD, v_BGTD)
        # the gather: [B*M, K, 2, G, D] -> [B, M*K, 2, G, D], cut to the visible slots; k and v seen as [B, G, S, D]
        kv_BS2GD = self.kv_LNK2GD[layer].index_select(0, self._table_flat).view(B, -1, 2, G, D)[:, :S]
        return kv_BS2GD[:, :, 0].transpose(1, 2), kv_BS2GD[:, :, 1].transpose(1, 2)

    def attend(self, layer: int, q_BHTD: torch.Tensor, k_BGTD: torch.Tensor, v_BGTD: torch.Tensor,
               gate_BTH3: torch.Tensor | None, window: int, topk: int) -> torch.Tensor | None:
        """A decode step's attention read from the blocks in place (KVCacheLike's optional call);
        None where the kernel does not apply (prefill, bf16, no kernel): the model then calls `update`."""
        if not self.decode_kernel or self._decode_write_B1 is None or q_BHTD.shape[2] != 1 or q_BHTD.dtype != torch.float32:
            return None
        self._write(layer, k_BGTD, v_BGTD)
        gate_BH3 = None if gate_BTH3 is None else gate_BTH3[:, 0]
        out_BHD = paged_decode.paged_decode_attention(q_BHTD[:, :, 0], self.kv_LNK2GD[layer], self._table_BM,
                                                      self._real_end_B, self.symbol_NK, gate_BH3, window, topk)
        return out_BHD[:, :, None]

    def visible_symbols(self) -> torch.Tensor:
        B = self._table_BM.shape[0]
        return self.symbol_NK.index_select(0, self._table_flat).view(B, -1)[:, : self.length]
