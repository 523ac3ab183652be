using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// The 8-bit blockwise counterpart of <see cref="Dequantize4bitKernel"/>: <c>output[i] = table[code_i] · absmax[i / blockSize]</c>
/// for one uint8 code per element and a 256-entry table, bit for bit what <see cref="BlockwiseKernels.Dequantize8bitTorch"/> gives.
/// </summary>
/// <remarks>
/// Used for double-quantized absmax values (expanded before every 4-bit dequantization, with the offset added as a
/// separate float32 rounding, as torch's <c>add_</c> after the multiply) and 8-bit optimizer states.
/// AVX2 (also on AVX-512 CPUs: .NET 8 has no 512-bit gather) gathers 8 table entries per instruction; other CPUs take the scalar loop. Same rounding and threading rules
/// as the 4-bit kernel.
/// </remarks>
internal static unsafe class Dequantize8bitKernel
{
    private const int Step = 16;

    /// <summary>Dequantizes n = <c>output.numel()</c> codes; <paramref name="isa"/> defaults to the best this CPU has (AVX-512 runs the AVX2 gathers).</summary>
    internal static void Run(Tensor codes, Tensor absmax, int blockSize, float[] table, Tensor output, float? offset = null, DequantizeIsa? isa = null, int? threads = null)
    {
        BlockwiseKernels.CheckBlockSize(blockSize, nameof(blockSize));
        if (!Dequantize4bitKernel.Accepts(codes, absmax, output))
        {
            throw new ArgumentException("The 8-bit kernel needs contiguous CPU tensors: uint8 codes, float32 absmax and a float32/bfloat16/float16 output.");
        }
        if (table.Length != 256)
        {
            throw new ArgumentException($"An 8-bit table has 256 entries, not {table.Length}.", nameof(table));
        }
        long n = output.numel();
        long blocks = (n + blockSize - 1) / blockSize;
        if (codes.numel() < n || absmax.numel() < blocks)
        {
            throw new ArgumentException($"{n} elements need {n} codes and {blocks} absmax values; got {codes.numel()} and {absmax.numel()}.");
        }
        var chosen = isa ?? Dequantize4bitKernel.Best;
        if (!Dequantize4bitKernel.IsSupported(chosen))
        {
            throw new PlatformNotSupportedException($"This CPU does not support {chosen}.");
        }
        if (n == 0)
        {
            return;
        }
        var job = new Job((byte*)Dequantize4bitKernel.Pointer(codes), (float*)Dequantize4bitKernel.Pointer(absmax), Dequantize4bitKernel.Pointer(output),
            output.dtype, n, blockSize, table, offset, chosen != DequantizeIsa.Scalar);
        Dequantize4bitKernel.ForBlocks(blocks, blockSize, threads, job.Blocks);
    }

    private sealed class Job(byte* codes, float* absmax, void* output, ScalarType dtype, long n, int blockSize, float[] table, float? offset, bool gather)
    {
        private readonly bool addOffset = offset.HasValue;
        private readonly float shift = offset ?? 0f;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Blocks(long first, long end)
        {
            fixed (float* lut = table)
            {
                for (long b = first; b < end; b++)
                {
                    long start = b * blockSize;
                    long count = Math.Min(blockSize, n - start);
                    long vectorCount = gather ? count / Step * Step : 0;
                    float scale = absmax[b];
                    if (vectorCount > 0)
                    {
                        GatherBlock(lut, scale, start, vectorCount);
                    }
                    for (long i = start + vectorCount; i < start + count; i++)
                    {
                        float value = lut[codes[i]] * scale;
                        if (addOffset)
                        {
                            value += shift;
                        }
                        switch (dtype)
                        {
                            case ScalarType.Float32: ((float*)output)[i] = value; break;
                            case ScalarType.BFloat16: ((ushort*)output)[i] = Dequantize4bitKernel.ToBFloat16(value); break;
                            default: ((Half*)output)[i] = (Half)value; break;
                        }
                    }
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void GatherBlock(float* lut, float scale, long start, long count)
        {
            var factor = Vector256.Create(scale);
            var added = Vector256.Create(shift);
            for (long i = start; i < start + count; i += Step)
            {
                var bytes = Sse2.LoadVector128(codes + i);
                var first = Avx.Multiply(Avx2.GatherVector256(lut, Avx2.ConvertToVector256Int32(bytes), 4), factor);
                var second = Avx.Multiply(Avx2.GatherVector256(lut, Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(bytes, 8)), 4), factor);
                if (addOffset)
                {
                    first = Avx.Add(first, added);
                    second = Avx.Add(second, added);
                }
                switch (dtype)
                {
                    case ScalarType.Float32:
                        Avx.Store((float*)output + i, first);
                        Avx.Store((float*)output + i + 8, second);
                        break;
                    case ScalarType.BFloat16:
                        Avx.Store((ushort*)output + i, Dequantize4bitKernel.PackBFloat16(first, second));
                        break;
                    default:
                        for (int j = 0; j < 8; j++)
                        {
                            ((Half*)output)[i + j] = (Half)first.GetElement(j);
                            ((Half*)output)[i + 8 + j] = (Half)second.GetElement(j);
                        }
                        break;
                }
            }
        }
    }
}
