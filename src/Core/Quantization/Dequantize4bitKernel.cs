using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>The instruction sets <see cref="Dequantize4bitKernel"/> can run on; tests force each one.</summary>
internal enum DequantizeIsa
{
    Scalar,
    Avx2,
    Avx512,
}

/// <summary>
/// Hand-vectorised 4-bit dequantization on the CPU: <c>output[i] = table[code_i] · absmax[i / blockSize]</c> for codes
/// packed two per byte (first element in the high nibble), formed in float32 and rounded once to the output dtype —
/// bit for bit what <see cref="BlockwiseKernels.Dequantize4bitTorch"/> gives, about 5× faster at 2 threads.
/// </summary>
/// <remarks>
/// QLoRA dequantizes every frozen weight two or three times per training step, so this is on the step's critical path.
/// The torch path gathers a complex64 pair table, multiplies and copies (three passes over memory, each a few ops per
/// element); here one pass does it: AVX-512 holds the 16-entry table in one register and <c>vpermps</c> looks up 16
/// codes at once; AVX2 looks up in two 8-entry halves and blends on bit 3 of the code. bfloat16 rounding is torch's
/// integer round-to-nearest-even on the float bits (<c>c10::BFloat16</c>), float16 uses <see cref="Half"/>'s IEEE
/// conversion (rare, so scalar). The loops are compiled fully optimised at once (<c>AggressiveOptimization</c>): tiered
/// JIT would run the first calls as unoptimised tier-0 code, several times slower, inside a run's first steps. Blocks are split across at most <c>torch.get_num_threads()</c> workers, so
/// <c>--threads 1</c> still means one thread.
/// </remarks>
internal static unsafe class Dequantize4bitKernel
{
    /// <summary>Elements per parallel work item (whole blocks): below this, scheduling costs more than it saves.</summary>
    internal const long ElementsPerTask = 1L << 16;

    /// <summary>Elements per vector step: 16 packed bytes. Every block size is a multiple, so a step never straddles blocks.</summary>
    private const int Step = 32;

    /// <summary>The best instruction set this CPU supports.</summary>
    internal static DequantizeIsa Best { get; } = Avx512F.IsSupported ? DequantizeIsa.Avx512 : Avx2.IsSupported ? DequantizeIsa.Avx2 : DequantizeIsa.Scalar;

    internal static bool IsSupported(DequantizeIsa isa) => isa switch
    {
        DequantizeIsa.Scalar => true,
        DequantizeIsa.Avx2 => Avx2.IsSupported,
        DequantizeIsa.Avx512 => Avx512F.IsSupported,
        _ => false,
    };

    /// <summary>Whether the kernel can take these tensors: all contiguous on the CPU, uint8 codes, float32 absmax, a float output.</summary>
    internal static bool Accepts(Tensor packed, Tensor absmax, Tensor output) =>
        packed.device_type == DeviceType.CPU && absmax.device_type == DeviceType.CPU && output.device_type == DeviceType.CPU
        && packed.dtype == ScalarType.Byte && absmax.dtype == ScalarType.Float32
        && output.dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16
        && packed.is_contiguous() && absmax.is_contiguous() && output.is_contiguous();

    /// <summary>
    /// Dequantizes the n = <c>output.numel()</c> codes in <paramref name="packed"/> ((n + 1) / 2 bytes) with one float32
    /// absmax per block of <paramref name="blockSize"/> (the short last block has its own) and the 16-entry
    /// <paramref name="table"/>. <paramref name="isa"/> defaults to <see cref="Best"/>; <paramref name="threads"/> to
    /// torch's intra-op thread count.
    /// </summary>
    internal static void Run(Tensor packed, Tensor absmax, int blockSize, float[] table, Tensor output, DequantizeIsa? isa = null, int? threads = null)
    {
        BlockwiseKernels.CheckBlockSize(blockSize, nameof(blockSize));
        if (!Accepts(packed, absmax, output))
        {
            throw new ArgumentException("The 4-bit kernel needs contiguous CPU tensors: uint8 codes, float32 absmax and a float32/bfloat16/float16 output.");
        }
        if (table.Length != 16)
        {
            throw new ArgumentException($"A 4-bit table has 16 entries, not {table.Length}.", nameof(table));
        }
        long n = output.numel();
        long blocks = (n + blockSize - 1) / blockSize;
        // The kernel writes through raw pointers: check the sizes it relies on instead of trusting the caller.
        if (packed.numel() < (n + 1) / 2 || absmax.numel() < blocks)
        {
            throw new ArgumentException($"{n} elements need {(n + 1) / 2} code bytes and {blocks} absmax values; got {packed.numel()} and {absmax.numel()}.");
        }
        var chosen = isa ?? Best;
        if (!IsSupported(chosen))
        {
            throw new PlatformNotSupportedException($"This CPU does not support {chosen}.");
        }
        if (n == 0)
        {
            return;
        }
        var job = new Job((byte*)Pointer(packed), (float*)Pointer(absmax), Pointer(output), output.dtype, n, blockSize, table, chosen);
        ForBlocks(blocks, blockSize, threads, job.Blocks);
    }

    /// <summary>
    /// Runs <paramref name="body"/>(first, end) over the blocks [0, <paramref name="blocks"/>) in tasks of about
    /// <see cref="ElementsPerTask"/> elements, on at most <paramref name="threads"/> workers (default: torch's thread count,
    /// so OMP_NUM_THREADS=1 still means one thread); on the calling thread alone when one worker would do.
    /// </summary>
    internal static void ForBlocks(long blocks, int blockSize, int? threads, Action<long, long> body)
    {
        long blocksPerTask = Math.Max(1, ElementsPerTask / blockSize);
        long tasks = (blocks + blocksPerTask - 1) / blocksPerTask;
        int degree = (int)Math.Min(tasks, Math.Max(1, threads ?? torch.get_num_threads()));
        if (degree <= 1)
        {
            body(0, blocks);
            return;
        }
        Parallel.For(0L, tasks, new ParallelOptions { MaxDegreeOfParallelism = degree },
            t => body(t * blocksPerTask, Math.Min(blocks, (t + 1) * blocksPerTask)));
    }

    /// <summary>
    /// The address of a contiguous CPU tensor's first element. <see cref="torch.Tensor.bytes"/> spans are int-sized, so
    /// take it from a one-element view; the storage is native memory owned by the tensor, valid while the caller holds it.
    /// </summary>
    internal static void* Pointer(Tensor tensor)
    {
        using var flat = tensor.view(-1);
        using var first = flat.narrow(0, 0, 1);
        return Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(first.bytes));
    }

    /// <summary>One dequantization: the raw pointers (kept alive by the caller's tensors for the call) and what to do.</summary>
    private sealed class Job(byte* packed, float* absmax, void* output, ScalarType dtype, long n, int blockSize, float[] table, DequantizeIsa isa)
    {
        private readonly int blockShift = System.Numerics.BitOperations.Log2((uint)blockSize);

        /// <summary>Dequantizes blocks [<paramref name="first"/>, <paramref name="end"/>).</summary>
        public void Blocks(long first, long end)
        {
            fixed (float* lut = table)
            {
                // Full blocks in one vector sweep; then, block by block, what is left: every block on the scalar path,
                // else only a short last block (its whole 32-element steps vectorised, the rest scalar).
                long vectorEnd = isa == DequantizeIsa.Scalar ? first : Math.Max(first, Math.Min(end, n / blockSize));
                VectorRange(lut, first * blockSize, vectorEnd * blockSize);
                for (long b = vectorEnd; b < end; b++)
                {
                    long start = b * blockSize;
                    long count = Math.Min(blockSize, n - start);
                    long vectorCount = isa == DequantizeIsa.Scalar ? 0 : count / Step * Step;
                    VectorRange(lut, start, start + vectorCount);
                    ScalarRange(lut, start + vectorCount, start + count);
                }
            }
        }

        private void VectorRange(float* lut, long from, long to)
        {
            if (to <= from)
            {
                return;
            }
            if (isa == DequantizeIsa.Avx512)
            {
                Avx512Range(lut, from, to);
            }
            else
            {
                Avx2Range(lut, from, to);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ScalarRange(float* lut, long from, long to)
        {
            for (long i = from; i < to; i++)
            {
                byte pair = packed[i >> 1];
                int code = (i & 1) == 0 ? pair >> 4 : pair & 15;
                Write(i, lut[code] * absmax[i >> blockShift]);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Write(long i, float value)
        {
            switch (dtype)
            {
                case ScalarType.Float32: ((float*)output)[i] = value; break;
                case ScalarType.BFloat16: ((ushort*)output)[i] = ToBFloat16(value); break;
                default: ((Half*)output)[i] = (Half)value; break;
            }
        }

        /// <summary>Elements [<paramref name="from"/>, <paramref name="to"/>), a whole number of 32-element steps.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Avx512Range(float* lut, long from, long to)
        {
            var lookup = Avx512F.LoadVector512(lut);
            for (long i = from; i < to; i += Step)
            {
                var factor = Vector512.Create(absmax[i >> blockShift]);
                var (codes0, codes1) = Nibbles(Sse2.LoadVector128(packed + i / 2));
                var v0 = Avx512F.Multiply(Avx512F.PermuteVar16x32(lookup, Avx512F.ConvertToVector512Int32(codes0)), factor);
                var v1 = Avx512F.Multiply(Avx512F.PermuteVar16x32(lookup, Avx512F.ConvertToVector512Int32(codes1)), factor);
                switch (dtype)
                {
                    case ScalarType.Float32:
                        Avx512F.Store((float*)output + i, v0);
                        Avx512F.Store((float*)output + i + 16, v1);
                        break;
                    case ScalarType.BFloat16:
                        Avx.Store((ushort*)output + i, Avx512F.ConvertToVector256UInt16(ToBFloat16(v0.AsUInt32())));
                        Avx.Store((ushort*)output + i + 16, Avx512F.ConvertToVector256UInt16(ToBFloat16(v1.AsUInt32())));
                        break;
                    default:
                        WriteHalf(i, v0);
                        WriteHalf(i + 16, v1);
                        break;
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Avx2Range(float* lut, long from, long to)
        {
            var low = Avx.LoadVector256(lut);
            var high = Avx.LoadVector256(lut + 8);
            for (long i = from; i < to; i += Step)
            {
                var factor = Vector256.Create(absmax[i >> blockShift]);
                var (codes0, codes1) = Nibbles(Sse2.LoadVector128(packed + i / 2));
                var v0 = Avx.Multiply(Lookup(low, high, Avx2.ConvertToVector256Int32(codes0)), factor);
                var v1 = Avx.Multiply(Lookup(low, high, Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(codes0, 8))), factor);
                var v2 = Avx.Multiply(Lookup(low, high, Avx2.ConvertToVector256Int32(codes1)), factor);
                var v3 = Avx.Multiply(Lookup(low, high, Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(codes1, 8))), factor);
                switch (dtype)
                {
                    case ScalarType.Float32:
                        Avx.Store((float*)output + i, v0);
                        Avx.Store((float*)output + i + 8, v1);
                        Avx.Store((float*)output + i + 16, v2);
                        Avx.Store((float*)output + i + 24, v3);
                        break;
                    case ScalarType.BFloat16:
                        Avx.Store((ushort*)output + i, PackBFloat16(v0, v1));
                        Avx.Store((ushort*)output + i + 16, PackBFloat16(v2, v3));
                        break;
                    default:
                        WriteHalf(i, Vector512.Create(v0, v1));
                        WriteHalf(i + 16, Vector512.Create(v2, v3));
                        break;
                }
            }
        }

        private void WriteHalf(long i, Vector512<float> values)
        {
            var target = (Half*)output + i;
            for (int j = 0; j < 16; j++)
            {
                target[j] = (Half)values.GetElement(j);
            }
        }
    }

    /// <summary>
    /// Splits 16 packed bytes into 32 codes in element order (high nibble first): the first 16 codes, then the next 16,
    /// one byte each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<byte> First, Vector128<byte> Second) Nibbles(Vector128<byte> bytes)
    {
        var mask = Vector128.Create((byte)15);
        var high = Sse2.And(Sse2.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte(), mask);
        var low = Sse2.And(bytes, mask);
        return (Sse2.UnpackLow(high, low), Sse2.UnpackHigh(high, low));
    }

    /// <summary>A 16-entry lookup with 8-entry permutes: entries 0-7 from <paramref name="low"/>, 8-15 (bit 3 set) from <paramref name="high"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Lookup(Vector256<float> low, Vector256<float> high, Vector256<int> codes) =>
        Avx.BlendVariable(Avx2.PermuteVar8x32(low, codes), Avx2.PermuteVar8x32(high, codes), Avx2.ShiftLeftLogical(codes, 28).AsSingle());

    /// <summary>
    /// float32 → bfloat16 bits as <c>c10::BFloat16</c> rounds: add 0x7FFF plus the lowest kept bit (round to nearest,
    /// ties to even) and keep the high half; NaN becomes the quiet NaN 0x7FC0.
    /// </summary>
    internal static ushort ToBFloat16(float value)
    {
        if (float.IsNaN(value))
        {
            return 0x7FC0;
        }
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<uint> ToBFloat16(Vector512<uint> bits)
    {
        var rounded = Avx512F.ShiftRightLogical(bits + Vector512.Create(0x7FFFu) + (Avx512F.ShiftRightLogical(bits, 16) & Vector512<uint>.One), 16);
        var isNumber = Vector512.Equals(bits.AsSingle(), bits.AsSingle()).AsUInt32();
        return Vector512.ConditionalSelect(isNumber, rounded, Vector512.Create(0x7FC0u));
    }

    /// <summary>Two 8-float vectors → 16 bfloat16 in order (vpackusdw packs per 128-bit lane, so the qwords are reordered after).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<ushort> PackBFloat16(Vector256<float> first, Vector256<float> second)
    {
        var packed = Avx2.PackUnsignedSaturate(ToBFloat16(first.AsUInt32()).AsInt32(), ToBFloat16(second.AsUInt32()).AsInt32());
        return Avx2.Permute4x64(packed.AsUInt64(), 0b11_01_10_00).AsUInt16();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> ToBFloat16(Vector256<uint> bits)
    {
        var rounded = Avx2.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + (Avx2.ShiftRightLogical(bits, 16) & Vector256<uint>.One), 16);
        var isNumber = Vector256.Equals(bits.AsSingle(), bits.AsSingle()).AsUInt32();
        return Vector256.ConditionalSelect(isNumber, rounded, Vector256.Create(0x7FC0u));
    }
}
