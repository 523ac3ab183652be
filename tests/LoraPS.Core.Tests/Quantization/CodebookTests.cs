using System.Text.Json;
using LoraPS.Quantization;
using LoraPS.Tests.Checkpoints;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

public class CodebookTests
{
    private static readonly string FixtureJson = Path.Combine(CheckpointTestFiles.RepoRoot, "tests", "fixtures", "nf4", "nf4_reference.json");

    [Fact]
    public void Nf4MatchesTheFixtureFloat32BitPatterns()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(FixtureJson));
        var expected = doc.RootElement.GetProperty("nf4_code_float32_hex").EnumerateArray().Select(e => unchecked((int)e.GetUInt32())).ToArray();
        Assert.Equal(expected, BnbReference.Bits(Codebooks.NF4));
        // Asymmetric: 7 negative values, an exact zero at index 7, 8 positive values.
        Assert.Equal(7, Codebooks.NF4.Count(v => v < 0));
        Assert.Equal(0, BitConverter.SingleToInt32Bits(Codebooks.NF4[7]));
        Assert.Equal(8, Codebooks.NF4.Count(v => v > 0));
    }

    [Fact]
    public void Nf4IsReproducedByCreateNormalMap()
    {
        // bnb create_normal_map(offset=0.9677083, use_extra_value=True): norm.ppf of float32 linspaces, rounded to
        // float32, sorted, divided by the max in float32. Wichura's AS241 stands in for scipy's ndtri (both ~1e-16).
        using var scope = NewDisposeScope();
        double[] Ppf(long steps) => linspace(0.9677083, 0.5, steps, dtype: ScalarType.Float32).data<float>().Take((int)steps - 1).Select(p => NormalQuantile(p)).ToArray();
        var v = Ppf(9).Concat(Ppf(8).Select(x => -x)).Select(x => (float)x).Append(0f).OrderBy(x => x).ToArray();
        float max = v.Max();
        var derived = v.Select(x => x / max).ToArray();
        Assert.Equal(BnbReference.Bits(Codebooks.NF4), BnbReference.Bits(derived));
    }

    [Fact]
    public void Fp4IsTheBnbE2M1TableInCodeOrder()
    {
        // [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12, then the same negated with the sign in bit 3.
        float[] magnitudes = [0f, 0.0625f / 12f, 8f / 12f, 1f, 4f / 12f, 0.5f, 2f / 12f, 0.25f];
        Assert.Equal(0.0052083335f, magnitudes[1]);
        Assert.Equal(0.6666667f, magnitudes[2]);
        Assert.Equal(0.33333334f, magnitudes[4]);
        Assert.Equal(0.16666667f, magnitudes[6]);
        for (int code = 0; code < 8; code++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(magnitudes[code]), BitConverter.SingleToInt32Bits(Codebooks.FP4[code]));
            if (code > 0)
            {
                Assert.Equal(-magnitudes[code], Codebooks.FP4[code | 0b1000]);
            }
        }
        // bnb writes "-0" in a Python list, which is the integer 0: its quant_map holds +0.0 at code 8.
        Assert.Equal(0, BitConverter.SingleToInt32Bits(Codebooks.FP4[8]));
    }

    [Fact]
    public void SignedDynamicMapHasBnbsKnownShape()
    {
        var map = Codebooks.DynamicSigned;
        Assert.Equal(256, map.Count);
        for (int i = 1; i < 256; i++)
        {
            Assert.True(map[i - 1] < map[i], $"not strictly ascending at {i}");
        }
        Assert.Equal(0f, map[127]);
        Assert.Equal(1f, map[255]);
        Assert.Equal(-0.99296875f, map[0], 6);
        Assert.Equal(127, map.Count(v => v < 0));
        // Negative entries are exact negations of the positive ones (1.0 has no partner).
        for (int i = 0; i < 127; i++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(-map[254 - i]), BitConverter.SingleToInt32Bits(map[i]));
        }
        // The smallest magnitude: the midpoint of linspace(0.1, 1, 2), 0.55, times 1e-6, all in float32.
        Assert.Equal((float)1e-6 * ((0.1f + 1f) / 2f), map[128]);
        Assert.Equal(5.5e-7f, map[128], 12);
    }

    [Fact]
    public void UnsignedDynamicMapRunsFromZeroToOne()
    {
        var map = Codebooks.DynamicUnsigned;
        Assert.Equal(256, map.Count);
        Assert.Equal(0f, map[0]);
        Assert.Equal(1f, map[255]);
        for (int i = 1; i < 256; i++)
        {
            Assert.True(map[i - 1] < map[i], $"not strictly ascending at {i}");
        }
        // Level i holds 2^(i+1) midpoints: the finest level (1e-6) has two, 0.325e-6 and 0.775e-6.
        Assert.Equal(0.325e-6f, map[1], 12);
        Assert.Equal(0.775e-6f, map[2], 12);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void DynamicMapsMatchAnIndependentScalarDerivation(bool signed)
    {
        // torch's float32 linspace: start + step·i for the first half, end − step·(steps−1−i) for the second,
        // each a fused multiply-add (one rounding), step = (end − start) / (steps − 1).
        static float[] Linspace(long steps)
        {
            float start = 0.1f, end = 1f, step = (end - start) / (steps - 1);
            return Enumerable.Range(0, (int)steps).Select(i => i < steps / 2
                ? MathF.FusedMultiplyAdd(step, i, start)
                : MathF.FusedMultiplyAdd(-step, steps - 1 - i, end)).ToArray();
        }
        var data = new List<float> { 0f, 1f };
        for (int i = 0; i < 7; i++)
        {
            long items = signed ? (1L << i) + 1 : (1L << (i + 1)) + 1;
            var b = Linspace(items);
            float scale = (float)Math.Pow(10, -6 + i);
            for (int k = 0; k + 1 < items; k++)
            {
                float mean = (b[k] + b[k + 1]) / 2f;
                data.Add(scale * mean);
                if (signed)
                {
                    data.Add(-scale * mean);
                }
            }
        }
        data.Sort();
        Assert.Equal(BnbReference.Bits(data), BnbReference.Bits(signed ? Codebooks.DynamicSigned : Codebooks.DynamicUnsigned));
    }

    [Fact]
    public void BadArgumentsAreRejectedWithClearErrors()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Codebooks.CreateDynamicMap(totalBits: 9));
        Assert.Throws<ArgumentOutOfRangeException>(() => Codebooks.CreateDynamicMap(maxExponentBits: 0));
        var e = Assert.Throws<ArgumentException>(() => Codebooks.For(QuantType.Int8));
        Assert.Contains("no codebook", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Codebooks.For((QuantType)42));
        Assert.Equal(QuantType.NF4, QuantTypes.Parse("NF4"));
        Assert.Equal(QuantType.FP4, QuantTypes.Parse(" fp4 "));
        Assert.Equal("int8", QuantType.Int8.ToBitsAndBytesName());
        var parse = Assert.Throws<ArgumentException>(() => QuantTypes.Parse("q4_0"));
        Assert.Contains("nf4, fp4, int8", parse.Message);
    }

    /// <summary>Wichura (1988) AS241 PPND16, accurate to about 1e-16.</summary>
    private static double NormalQuantile(double p)
    {
        double q = p - 0.5;
        if (Math.Abs(q) <= 0.425)
        {
            double r = 0.180625 - q * q;
            return q * (((((((2509.0809287301226727 * r + 33430.575583588128105) * r + 67265.770927008700853) * r + 45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r + 133.14166789178437745) * r + 3.387132872796366608)
                / (((((((5226.495278852854561 * r + 28729.085735721942674) * r + 39307.89580009271061) * r + 21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r + 42.313330701600911252) * r + 1.0);
        }
        double s = Math.Sqrt(-Math.Log(q < 0 ? p : 1 - p));
        double value;
        if (s <= 5.0)
        {
            s -= 1.6;
            value = (((((((7.7454501427834140764e-4 * s + 0.0227238449892691845833) * s + 0.24178072517745061177) * s + 1.27045825245236838258) * s + 3.64784832476320460504) * s + 5.7694972214606914055) * s + 4.6303378461565452959) * s + 1.42343711074968357734)
                / (((((((1.05075007164441684324e-9 * s + 5.475938084995344946e-4) * s + 0.0151986665636164571966) * s + 0.14810397642748007459) * s + 0.68976733498510000455) * s + 1.6763848301838038494) * s + 2.05319162663775882187) * s + 1.0);
        }
        else
        {
            s -= 5.0;
            value = (((((((2.01033439929228813265e-7 * s + 2.71155556874348757815e-5) * s + 0.0012426609473880784386) * s + 0.026532189526576123093) * s + 0.29656057182850489123) * s + 1.7848265399172913358) * s + 5.4637849111641143699) * s + 6.6579046435011037772)
                / (((((((2.04426310338993978564e-15 * s + 1.4215117583164458887e-7) * s + 1.8463183175100546818e-5) * s + 7.868691311456132591e-4) * s + 0.0148753612908506148525) * s + 0.13692988092273580531) * s + 0.59983220655588793769) * s + 1.0);
        }
        return q < 0 ? -value : value;
    }
}
