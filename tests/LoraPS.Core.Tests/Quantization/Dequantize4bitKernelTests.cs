using LoraPS.Quantization;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

/// <summary>
/// The hand-vectorised CPU kernel must give the torch-ops path's bits exactly, on every instruction set this CPU has,
/// for every output dtype, odd sizes and short last blocks, zero and tiny (subnormal-product) absmax values.
/// </summary>
public class Dequantize4bitKernelTests
{
    public static TheoryData<int, int, string> Cases()
    {
        var data = new TheoryData<int, int, string>();
        foreach (var (n, blockSize) in new[] { (1, 64), (63, 64), (64, 64), (65, 64), (101, 64), (3 * 67, 64), (64 * 172, 64), (700 * 601, 64), (700 * 601, 256), (300_033, 4096), (4097, 4096), (95, 32), (200_001, 32) })
        {
            foreach (var dtype in new[] { "float32", "bfloat16", "float16" })
            {
                data.Add(n, blockSize, dtype);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryInstructionSetMatchesTheTorchPathBitForBit(int n, int blockSize, string dtypeName)
    {
        using var scope = NewDisposeScope();
        var dtype = DType(dtypeName);
        var (packed, absmax) = RandomCodes(n, blockSize, seed: n + blockSize);
        foreach (var (name, table) in new[] { ("nf4", Codebooks.NF4), ("fp4", Codebooks.FP4) })
        {
            var expected = TorchPath(packed, absmax, blockSize, name, table, n, dtype);
            foreach (var isa in Enum.GetValues<DequantizeIsa>().Where(Dequantize4bitKernel.IsSupported))
            {
                foreach (int threads in new[] { 1, 2 })
                {
                    var actual = full(n, float.NaN, dtype);
                    Dequantize4bitKernel.Run(packed, absmax, blockSize, table.ToArray(), actual, isa, threads);
                    AssertSameBits(expected, actual, $"{name} {isa} {threads} thread(s)");
                }
            }
        }
    }

    [Theory]
    [InlineData(1, 256)]
    [InlineData(255, 256)]
    [InlineData(257, 256)]
    [InlineData(70_001, 256)]
    [InlineData(200_003, 64)]
    [InlineData(9_000, 4096)]
    public void EightBitKernelMatchesTheTorchPathBitForBit(int n, int blockSize)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)n);
        var codes = randint(0, 256, new long[] { n }, generator: generator).to_type(ScalarType.Byte);
        var (_, absmax) = RandomCodes(n, blockSize, seed: n);
        foreach (var (name, table) in new[] { ("dynamic", Codebooks.DynamicSigned), ("udynamic", Codebooks.DynamicUnsigned) })
        {
            var tableTensor = tensor(table.ToArray());
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
            {
                var expected = full(n, float.NaN, dtype);
                BlockwiseKernels.Dequantize8bitTorch(codes, absmax, blockSize, tableTensor, expected);
                foreach (var isa in Enum.GetValues<DequantizeIsa>().Where(Dequantize4bitKernel.IsSupported))
                {
                    foreach (int threads in new[] { 1, 2 })
                    {
                        var actual = full(n, float.NaN, dtype);
                        Dequantize8bitKernel.Run(codes, absmax, blockSize, table.ToArray(), actual, null, isa, threads);
                        AssertSameBits(expected, actual, $"{name} {dtype} {isa} {threads} thread(s)");
                        if (dtype == ScalarType.Float32)
                        {
                            var shifted = expected.clone().add_(-0.0123f);
                            Dequantize8bitKernel.Run(codes, absmax, blockSize, table.ToArray(), actual, -0.0123f, isa, threads);
                            AssertSameBits(shifted, actual, $"{name} {isa} {threads} thread(s) with an offset");
                        }
                    }
                }
                var routed = full(n, float.NaN, dtype);
                BlockwiseKernels.Dequantize8bit(codes, absmax, blockSize, tableTensor, routed);
                AssertSameBits(expected, routed, $"{name} {dtype} routed");
            }
        }
    }

    [Theory]
    [InlineData(QuantType.NF4, false, 64)]
    [InlineData(QuantType.NF4, true, 64)]
    [InlineData(QuantType.FP4, false, 256)]
    [InlineData(QuantType.FP4, true, 64)]
    [InlineData(QuantType.NF4, true, 4096)]
    public void DequantizeIntoTakesTheKernelAndMatchesTheTorchPath(QuantType type, bool doubleQuant, int blockSize)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(7UL);
        var weight = randn(new long[] { 701, 67 }, generator: generator) * 0.02;
        weight.narrow(0, 10, 2).zero_();
        weight.narrow(0, 300, 1).mul_(-3);
        using var q = QuantizedTensor.Quantize(weight, type, blockSize, doubleQuant);
        var absmax = q.State.DequantizeAbsmax();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
        {
            var expected = TorchPath(q.Data.view(-1), absmax, blockSize, type.ToBitsAndBytesName(), Codebooks.For(type), weight.numel(), dtype);
            var actual = empty(weight.shape, dtype);
            q.DequantizeInto(actual);
            AssertSameBits(expected, actual.view(-1), $"{type} dq={doubleQuant} {dtype}");
        }
    }

    [Fact]
    public void BFloat16RoundingIsTorchsForTiesSubnormalsAndSignedZeros()
    {
        using var scope = NewDisposeScope();
        float[] values = [1f + 1f / 256, 1f + 3f / 256, -(1f + 1f / 256), 1e-40f, -1e-40f, 3e-39f, 0f, -0f, 3.3895e38f, float.Epsilon, 1.00390625f, 1.0039063f];
        var expected = BnbReference.Bits(tensor(values).to_type(ScalarType.BFloat16).to_type(ScalarType.Float32).data<float>().ToArray());
        var actual = values.Select(v => (int)((uint)Dequantize4bitKernel.ToBFloat16(v) << 16)).ToArray();
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void RejectsTooFewCodeBytesOrAbsmaxValues()
    {
        using var scope = NewDisposeScope();
        var table = Codebooks.NF4.ToArray();
        Assert.Throws<ArgumentException>(() => Dequantize4bitKernel.Run(zeros(31, ScalarType.Byte), ones(1), 64, table, empty(64)));
        Assert.Throws<ArgumentException>(() => Dequantize4bitKernel.Run(zeros(33, ScalarType.Byte), ones(1), 64, table, empty(65)));
        Assert.Throws<ArgumentException>(() => Dequantize4bitKernel.Run(zeros(32, ScalarType.Byte), ones(1), 64, table, empty(64).to_type(ScalarType.Float64)));
    }

    /// <summary>Random bytes (every code) and absmax values that include zeros, negatives' partners, large and subnormal-making scales.</summary>
    private static (Tensor Packed, Tensor Absmax) RandomCodes(long n, int blockSize, int seed)
    {
        var generator = new Generator((ulong)seed);
        var packed = randint(0, 256, new long[] { (n + 1) / 2 }, generator: generator).to_type(ScalarType.Byte);
        long blocks = (n + blockSize - 1) / blockSize;
        var absmax = rand(new long[] { blocks }, generator: generator).mul_(4);
        float[] specials = [0f, 1e-38f, 3e-39f, 1e30f, 3.4e38f, 0f];
        for (int i = 0; i < specials.Length && i < blocks; i++)
        {
            absmax[i * blocks / specials.Length].fill_(specials[i]);
        }
        return (packed, absmax);
    }

    private static Tensor TorchPath(Tensor packed, Tensor absmax, int blockSize, string name, IReadOnlyList<float> table, long n, ScalarType dtype)
    {
        var output = full(n, float.NaN, dtype);
        BlockwiseKernels.Dequantize4bitTorch(packed, absmax, blockSize, BlockwiseKernels.PairTable(name, table, CPU), output);
        return output;
    }

    private static void AssertSameBits(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        var e = expected.bytes.ToArray();
        var a = actual.bytes.ToArray();
        Assert.Equal(e.Length, a.Length);
        if (e.AsSpan().SequenceEqual(a))
        {
            return;
        }
        int first = Enumerable.Range(0, e.Length).FirstOrDefault(i => e[i] != a[i], -1);
        Assert.Fail($"{what}: first different byte at {first} (element {first / (int)expected.ElementSize}) of {e.Length}.");
    }

    private static ScalarType DType(string name) => name switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        _ => ScalarType.Float16,
    };
}
