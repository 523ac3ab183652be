using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Models.ModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Models;

/// <summary>Cached decoding must give the logits of a full forward pass, with and without padding.</summary>
public class KvCacheTests
{
    [Theory]
    [InlineData("tiny-llama", 0)]
    [InlineData("tiny-qwen2", 0)]
    [InlineData("tiny-gpt2", 0)]
    [InlineData("tiny-llama", 16)]
    [InlineData("tiny-gpt2", 16)]
    public void IncrementalLogitsEqualFullForward(string name, long capacity)
    {
        using var loaded = ModelLoader.Load(Fixture(name));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = Reference(name)["input_ids"];   // [2, 16]
        var full = loaded.Model.Forward(ids).Logits!;

        using var cache = loaded.Model.CreateKvCache(capacity);
        var parts = new List<Tensor> { loaded.Model.Forward(ids.narrow(1, 0, 9), cache: cache).Logits! };
        for (var t = 9; t < 16; t++)
            parts.Add(loaded.Model.Forward(ids.narrow(1, t, 1), cache: cache).Logits!);
        AssertClose(full, torch.cat(parts, 1), 1e-4, 1e-4, $"{name} cached logits");
        Assert.Equal(16, cache.Length);
        Assert.True(cache.Capacity >= 16);
        if (capacity > 0) Assert.Equal(capacity, cache.Capacity);
    }

    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-gpt2")]
    public void LeftPaddedBatchWithCacheMatchesUnpaddedRows(string name)
    {
        using var loaded = ModelLoader.Load(Fixture(name));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var model = loaded.Model;
        var ids = Reference(name)["input_ids"];
        var shortRow = ids[1].narrow(0, 0, 5);                     // 5 real tokens, left-padded by 3
        var longRow = ids[0].narrow(0, 0, 8);
        var batch = torch.stack(new[] { longRow, torch.cat(new[] { torch.zeros(3, dtype: ScalarType.Int64), shortRow }) });
        var mask = torch.tensor(new long[,] { { 1, 1, 1, 1, 1, 1, 1, 1 }, { 0, 0, 0, 1, 1, 1, 1, 1 } });
        // Positions as generation computes them for left padding: cumsum(mask) − 1, pads clamped to 0.
        var positions = (mask.cumsum(1) - 1).clamp_min(0);

        using var cache = model.CreateKvCache();
        var prefill = model.Forward(batch, mask, cache, positionIds: positions).Logits!;
        var next = torch.stack(new[] { ids[0][8], ids[1][5] }).unsqueeze(1);
        var stepMask = torch.cat(new[] { mask, torch.ones(2, 1, dtype: ScalarType.Int64) }, 1);
        var stepPositions = torch.tensor(new long[,] { { 8 }, { 5 } });
        var step = model.Forward(next, stepMask, cache, positionIds: stepPositions).Logits!;

        var alone = model.Forward(ids[1].narrow(0, 0, 6).unsqueeze(0)).Logits!;
        AssertClose(alone[0].narrow(0, 0, 5), prefill[1].narrow(0, 3, 5), 1e-4, 1e-4, "left-padded prefill");
        AssertClose(alone[0][5], step[1][0], 1e-4, 1e-4, "left-padded cached step");
        var longAlone = model.Forward(ids[0].narrow(0, 0, 9).unsqueeze(0)).Logits!;
        AssertClose(longAlone[0][8], step[0][0], 1e-4, 1e-4, "unpadded row in the same batch");
    }

    [Fact]
    public void CacheRejectsMisuse()
    {
        using var loaded = ModelLoader.Load(Fixture("tiny-llama"));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = Reference("tiny-llama")["input_ids"];

        using var small = loaded.Model.CreateKvCache(maxLength: 4);
        var overflow = Assert.Throws<InvalidOperationException>(() => loaded.Model.Forward(ids.narrow(1, 0, 5), cache: small));
        Assert.Contains("4 positions", overflow.Message);

        using var cache = loaded.Model.CreateKvCache();
        loaded.Model.Forward(ids.narrow(1, 0, 4), cache: cache);
        var shortMask = torch.ones(2, 1, dtype: ScalarType.Int64);
        var e = Assert.Throws<ArgumentException>(() => loaded.Model.Forward(ids.narrow(1, 4, 1), shortMask, cache));
        Assert.Contains("past and new tokens", e.Message);

        using var wrongLayers = new KvCache(numLayers: 3);
        Assert.Throws<ArgumentException>(() => loaded.Model.Forward(ids, cache: wrongLayers));
        using var bert = ModelLoader.Load(Fixture("tiny-bert"));
        Assert.Throws<InvalidOperationException>(() => bert.Model.CreateKvCache());

        cache.Reset();
        Assert.Equal(0, cache.Length);
    }
}
