using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// The vectorised kernels behind every format: blockwise absmax quantization to codebook indices, 4-bit nibble packing,
/// and dequantization by table lookup. All work streams over the flattened tensor in chunks of
/// <see cref="ChunkElements"/>, so temporaries stay a few MB (and are recycled by the allocator instead of being
/// page-faulted in again on every call) however large the weight is.
/// </summary>
/// <remarks>
/// Semantics follow bitsandbytes' reference backend (<c>backends/default/ops.py</c>, <c>quantize_4bit</c> and
/// <c>quantize_blockwise</c>): blocks run over the flattened tensor and a short last block gets its own absmax;
/// <c>absmax = max|x|</c> in float32; <c>x · (1/absmax)</c> (reciprocal, then multiply) clamped to [-1, 1]; nearest code
/// with the first index winning ties (<see cref="NearestCode"/>).
/// </remarks>
internal static class BlockwiseKernels
{
    /// <summary>Elements per streamed chunk: a multiple of every allowed block size, so chunks hold whole blocks.</summary>
    internal const long ChunkElements = 1L << 18;

    internal static void CheckBlockSize(int blockSize, string parameterName)
    {
        if (blockSize < 32 || blockSize > 4096 || (blockSize & (blockSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(parameterName, blockSize,
                "The block size must be a power of two from 32 to 4096, as bitsandbytes allows (64 is the 4-bit default, 256 the double-quantization and 8-bit optimizer size).");
        }
    }

    /// <summary>
    /// Quantizes the 1-D <paramref name="flat"/> (float16/bfloat16/float32) in blocks: writes each block's absmax into
    /// <paramref name="absmax"/> (float32) and hands the uint8 codes of each chunk to <paramref name="emit"/> with the
    /// chunk's first element index. <paramref name="what"/> names the tensor in error messages.
    /// </summary>
    internal static void Quantize(Tensor flat, int blockSize, NearestCode codes, Tensor absmax, Action<long, Tensor> emit, string what)
    {
        long n = flat.shape[0];
        long fullElements = n / blockSize * blockSize;
        for (long start = 0; start < fullElements; start += ChunkElements)
        {
            using var scope = NewDisposeScope();
            long length = Math.Min(ChunkElements, fullElements - start);
            var blocks = flat.narrow(0, start, length).to_type(ScalarType.Float32).view(length / blockSize, blockSize);
            var blockAbsmax = blocks.abs().amax([1]);
            absmax.narrow(0, start / blockSize, length / blockSize).copy_(blockAbsmax);
            emit(start, Encode(blocks, blockAbsmax, codes, what, start / blockSize).view(-1));
        }
        if (fullElements < n)
        {
            using var scope = NewDisposeScope();
            var block = flat.narrow(0, fullElements, n - fullElements).to_type(ScalarType.Float32).view(1, n - fullElements);
            var blockAbsmax = block.abs().amax([1]);
            absmax.narrow(0, fullElements / blockSize, 1).copy_(blockAbsmax);
            emit(fullElements, Encode(block, blockAbsmax, codes, what, fullElements / blockSize).view(-1));
        }
    }

    // Runs inside the caller's chunk scope, which owns the temporaries and the result.
    private static Tensor Encode(Tensor blocks, Tensor blockAbsmax, NearestCode codes, string what, long firstBlock)
    {
        if (!blockAbsmax.isfinite().all().item<bool>())
        {
            long bad = firstBlock + blockAbsmax.isfinite().logical_not().nonzero()[0, 0].item<long>();
            throw new ArgumentException(
                $"Cannot quantize {what}: block {bad} contains NaN or infinite values. Quantization needs finite weights; check the checkpoint or the training run that produced them.");
        }
        // bnb computes 1 / absmax as absmax.reciprocal() * 1 (torch's __rtruediv__), then multiplies.
        var scale = blockAbsmax.reciprocal();
        var zero = blockAbsmax.eq(0);
        bool anyZero = zero.any().item<bool>();
        if (anyZero)
        {
            scale.masked_fill_(zero, 0);
        }
        var scaled = (blocks * scale.unsqueeze(1)).clamp_(-1, 1);
        var result = codes.Encode(scaled);
        if (anyZero)
        {
            // In bnb an all-zero block scales as 0 · (1/0) = NaN, and both its reference argmin and the CUDA decision
            // tree send NaN to code 0. Keep that, so packed bytes match bnb; the block still dequantizes to ±0.
            result.masked_fill_(zero.unsqueeze(1), 0);
        }
        return result;
    }

    /// <summary>
    /// Packs uint8 codes two per byte, the first element in the high nibble (bnb: <c>q[::2] &lt;&lt; 4 | q[1::2]</c>).
    /// An odd count is padded with <paramref name="paddingCode"/>, the code of 0.0, as bnb pads the scaled values with 0.
    /// </summary>
    internal static Tensor PackNibbles(Tensor codes, byte paddingCode)
    {
        using var scope = NewDisposeScope();
        var even = codes.shape[0] % 2 == 0 ? codes : cat([codes, full(1, paddingCode, ScalarType.Byte, codes.device)]);
        var pairs = even.view(-1, 2);
        return (pairs.select(1, 0) * 16 + pairs.select(1, 1)).MoveToOuterDisposeScope();
    }

    private static readonly ConcurrentDictionary<(string Name, string Device), Tensor> pairTables = new();

    /// <summary>
    /// For every byte value b, the two table values it decodes to, (table[b &gt;&gt; 4], table[b &amp; 15]), as one
    /// complex64 so that a single 1-D gather yields both; <c>view_as_real</c> then lays them out as consecutive floats.
    /// </summary>
    internal static Tensor PairTable(string name, IReadOnlyList<float> table, Device device) =>
        pairTables.GetOrAdd((name, device.ToString()), _ =>
        {
            using var scope = NewDisposeScope();
            var values = tensor(table.ToArray(), ScalarType.Float32, device);
            var pairs = complex(values.repeat_interleave(16), values.repeat(16));
            return Codebooks.Detached(pairs.MoveToOuterDisposeScope());
        });

    private static readonly ConcurrentDictionary<string, float[]> tables = new();

    /// <summary>
    /// Writes <c>table[code] · absmax[block]</c> for the 4-bit codes packed in <paramref name="packed"/> (1-D uint8)
    /// into the 1-D <paramref name="output"/> (float32/bfloat16/float16, n elements). The product is formed in float32
    /// and rounded once to the output dtype, as bnb's CUDA and CPU kernels do. Contiguous CPU tensors go through
    /// <see cref="Dequantize4bitKernel"/>; other devices through torch ops (<see cref="Dequantize4bitTorch"/>), with the
    /// same bits.
    /// </summary>
    internal static void Dequantize4bit(Tensor packed, Tensor absmax, int blockSize, string name, IReadOnlyList<float> table, Tensor output)
    {
        if (Dequantize4bitKernel.Accepts(packed, absmax, output))
        {
            Dequantize4bitKernel.Run(packed, absmax, blockSize, tables.GetOrAdd(name, _ => table.ToArray()), output);
            return;
        }
        Dequantize4bitTorch(packed, absmax, blockSize, PairTable(name, table, output.device), output);
    }

    /// <summary>The torch-ops form of <see cref="Dequantize4bit"/> (any device), streamed in chunks; the kernel's reference in tests.</summary>
    internal static void Dequantize4bitTorch(Tensor packed, Tensor absmax, int blockSize, Tensor pairTable, Tensor output)
    {
        long n = output.shape[0];
        long fullElements = n / blockSize * blockSize;
        for (long start = 0; start < fullElements; start += ChunkElements)
        {
            using var scope = NewDisposeScope();
            long length = Math.Min(ChunkElements, fullElements - start);
            var values = view_as_real(pairTable.index_select(0, packed.narrow(0, start / 2, length / 2).to_type(ScalarType.Int32)))
                .view(length / blockSize, blockSize);
            values.mul_(absmax.narrow(0, start / blockSize, length / blockSize).unsqueeze(1));
            output.narrow(0, start, length).view(length / blockSize, blockSize).copy_(values);
        }
        if (fullElements < n)
        {
            using var scope = NewDisposeScope();
            long rest = n - fullElements;
            var values = view_as_real(pairTable.index_select(0, packed.narrow(0, fullElements / 2, (rest + 1) / 2).to_type(ScalarType.Int32)))
                .view(-1).narrow(0, 0, rest);
            values.mul_(absmax.narrow(0, absmax.shape[0] - 1, 1));
            output.narrow(0, fullElements, rest).copy_(values);
        }
    }

    /// <summary>
    /// Writes <c>table[code] · absmax[block]</c> for one 8-bit code per element (1-D uint8 <paramref name="codes"/>)
    /// into the 1-D <paramref name="output"/>; <paramref name="table"/> is a float32 tensor of 256 entries. Contiguous
    /// CPU tensors go through <see cref="Dequantize8bitKernel"/>, others through torch ops, with the same bits.
    /// <paramref name="offset"/>, when given, is added after the multiply (double quantization's mean of the absmax).
    /// </summary>
    internal static void Dequantize8bit(Tensor codes, Tensor absmax, int blockSize, Tensor table, Tensor output, float? offset = null)
    {
        if (Dequantize4bitKernel.Accepts(codes, absmax, output) && table.device_type == DeviceType.CPU && table.dtype == ScalarType.Float32 && table.numel() == 256)
        {
            Dequantize8bitKernel.Run(codes, absmax, blockSize, table.contiguous().data<float>().ToArray(), output, offset);
            return;
        }
        Dequantize8bitTorch(codes, absmax, blockSize, table, output);
        if (offset is { } value)
        {
            output.add_(value);
        }
    }

    /// <summary>The torch-ops form of <see cref="Dequantize8bit"/> (any device), streamed in chunks; the kernel's reference in tests.</summary>
    internal static void Dequantize8bitTorch(Tensor codes, Tensor absmax, int blockSize, Tensor table, Tensor output)
    {
        long n = output.shape[0];
        for (long start = 0; start < n; start += ChunkElements)
        {
            using var scope = NewDisposeScope();
            long length = Math.Min(ChunkElements, n - start);
            long full = length / blockSize * blockSize;
            var values = table.index_select(0, codes.narrow(0, start, length).to_type(ScalarType.Int32));
            long firstBlock = start / blockSize;
            if (full > 0)
            {
                values.narrow(0, 0, full).view(full / blockSize, blockSize).mul_(absmax.narrow(0, firstBlock, full / blockSize).unsqueeze(1));
            }
            if (full < length)
            {
                values.narrow(0, full, length - full).mul_(absmax.narrow(0, firstBlock + full / blockSize, 1));
            }
            output.narrow(0, start, length).copy_(values);
        }
    }
}
