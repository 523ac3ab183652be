using LoraPS.Quantization;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

public class NearestCodeTests
{
    public static TheoryData<string> Tables => new() { "nf4", "fp4", "dynamic", "udynamic" };

    private static IReadOnlyList<float> Table(string name) => name switch
    {
        "nf4" => Codebooks.NF4,
        "fp4" => Codebooks.FP4,
        "dynamic" => Codebooks.DynamicSigned,
        _ => Codebooks.DynamicUnsigned,
    };

    [Theory]
    [MemberData(nameof(Tables))]
    public void EqualsBruteForceArgminEspeciallyNearMidpoints(string name)
    {
        using var scope = NewDisposeScope();
        var table = Table(name);
        var sorted = table.Distinct().Order().ToArray();
        var probes = new List<float> { -1f, 1f, 0f, -0f };
        // Every table value and every midpoint, with the 4 floats on each side of them.
        foreach (float v in sorted.Concat(sorted.Zip(sorted.Skip(1), (a, b) => (a + b) / 2f)))
        {
            float x = v;
            for (int i = 0; i < 4; i++)
            {
                x = MathF.BitDecrement(x);
            }
            for (int i = 0; i < 9; i++, x = MathF.BitIncrement(x))
            {
                probes.Add(Math.Clamp(x, -1f, 1f));
            }
        }
        var random = new Random(17);
        probes.AddRange(Enumerable.Range(0, 5000).Select(_ => (float)(random.NextDouble() * 2 - 1)));
        probes.AddRange(Enumerable.Range(0, 2000).Select(_ => (float)((random.NextDouble() * 2 - 1) * Math.Pow(10, -random.Next(8)))));

        var expected = probes.Select(p => BnbReference.Argmin(p, table)).ToArray();
        var search = new NearestCode(name, table);
        // The 16-entry tables take the bin lookup, the 256-entry maps bucketize: both paths are checked here.
        Assert.Equal(table.Count == 16, search.UsesBins);
        var actual = BnbReference.Bytes(search.Encode(tensor(probes.ToArray())));
        var mismatches = Enumerable.Range(0, probes.Count).Where(i => expected[i] != actual[i]).Take(5)
            .Select(i => $"x={probes[i]:R}: argmin {expected[i]}, got {actual[i]}").ToArray();
        Assert.Empty(mismatches);
    }

    [Fact]
    public void TheRuleIsFirstIndexNotSmallerValue()
    {
        using var scope = NewDisposeScope();
        // Unsorted with a duplicate: at 0.75, 1.0 (index 0) beats 0.5 (index 1); at 0.25, 0.5 (index 1) beats 0 (index 2).
        var search = new NearestCode("test", [1f, 0.5f, 0f, -1f, 0f]);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 0, 1, 2 },
            BnbReference.Bytes(search.Encode(tensor(new[] { 0.75f, 0.7499999f, 0f, -1f, 0.9f, 0.25f, 0.2499999f }))));
        Assert.Equal(7, NearestCode.For(QuantType.NF4).CodeOfZero());
        Assert.Equal(0, NearestCode.For(QuantType.FP4).CodeOfZero());
    }
}
