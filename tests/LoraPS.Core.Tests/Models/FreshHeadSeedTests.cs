using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Models.ModelTestFiles;

namespace LoraPS.Tests.Models;

/// <summary>A new classification head on a pretrained body is drawn from the load's seed, so runs from it repeat.</summary>
public class FreshHeadSeedTests
{
    static torch.Tensor Head(long? seed)
    {
        using var loaded = ModelLoader.Load(Stories260K, new ModelLoadOptions { Head = ModelHeadKind.SequenceClassification, NumLabels = 2, Seed = seed });
        Assert.Contains("score.weight", loaded.Report.Missing);
        return loaded.Model.state_dict()["score.weight"].detach().clone();
    }

    [Fact]
    public void TheSameSeedGivesTheSameHeadAndAnotherSeedAnother()
    {
        using var a = Head(7);
        using var b = Head(7);
        using var c = Head(8);
        Assert.True(a.allclose(b, 0, 0), "same seed, different head");
        Assert.False(a.allclose(c, 0, 0), "different seeds, same head");
        // transformers' initialisation: N(0, initializer_range = 0.02).
        Assert.InRange(a.std().item<float>(), 0.015f, 0.025f);
        Assert.InRange(Math.Abs(a.mean().item<float>()), 0f, 0.005f);
    }
}
