using LoraPS.Adapters;
using LoraPS.Models;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// Several adapters on one model, checked against a second copy of the base model whose weights get the
/// hand-computed update ΔW = s·B·A (or a weighted sum of them) added directly: switching, summing, disabling,
/// deleting, and PEFT's weighted combinations (linear, cat, svd) at model level, saved and reloaded.
/// </summary>
public class AdapterSetSwitchingTests
{
    const string Model = "tiny-llama";

    static LoraConfig Config(int rank, double alpha, params string[] targets) =>
        new() { Rank = rank, Alpha = alpha, Dropout = 0, TargetModules = ModuleSelection.Names(targets) };

    /// <summary>s·B·A of <paramref name="adapter"/> at every layer it adapts, from its factors and config.</summary>
    static Dictionary<string, Tensor> HandDelta(LoraAdapterSet set, string adapter, double weight = 1.0)
    {
        var config = set.Get(adapter).Config;
        double scaling = config.UseRsLora ? config.Alpha / Math.Sqrt(config.Rank) : config.Alpha / config.Rank;
        return set.Get(adapter).Targets.ToDictionary(t => t.Path, t =>
        {
            var layer = set.LoraLayers[t.Path];
            return weight * scaling * layer.LoraB(adapter).detach().matmul(layer.LoraA(adapter).detach());
        });
    }

    static Dictionary<string, Tensor> Sum(params Dictionary<string, Tensor>[] deltas)
    {
        var total = new Dictionary<string, Tensor>();
        foreach (var d in deltas)
            foreach (var (path, delta) in d) total[path] = total.TryGetValue(path, out var t) ? t + delta : delta;
        return total;
    }

    /// <summary>Logits of a fresh base model with <paramref name="deltas"/> added to its Linear weights.</summary>
    static Tensor HandLogits(Dictionary<string, Tensor> deltas, Dictionary<string, Tensor> reference)
    {
        using var model = LoadBase(Model);
        using (no_grad())
        {
            foreach (var (path, delta) in deltas) ((Linear)model.Model.GetModule(path)).weight!.add_(delta);
        }
        return Logits(model.Model, reference);
    }

    [Fact]
    public void SwitchingSummingDisablingAndDeletingMatchHandComputedUpdates()
    {
        using var loaded = LoadBase(Model);
        var set = new LoraAdapterSet(loaded.Model);
        set.Add("a", Config(4, 8, "q_proj", "v_proj"), seed: 1);
        set.Add("b", Config(2, 4, "q_proj", "o_proj") with { UseRsLora = true }, seed: 2);
        RandomizeB(set, "a", 10);
        RandomizeB(set, "b", 20);
        using var scope = NewDisposeScope();
        var r = Reference(Model);
        var a = HandDelta(set, "a");
        var b = HandDelta(set, "b");

        // The first adapter is active; the second starts inactive and frozen.
        Assert.Equal(["a"], set.ActiveAdapters);
        Assert.False(set.Get("b").IsActive);
        Assert.Equal(set.Get("a").ParameterCount, set.TrainableParameters);
        TensorAssert.Close(HandLogits(a, r), Logits(loaded.Model, r), 1e-5, "a");

        set.SetActive("b");
        Assert.Equal(set.Get("b").ParameterCount, set.TrainableParameters);
        Assert.False(set.LoraLayers["model.layers.0.self_attn.q_proj"].LoraA("a").requires_grad);
        TensorAssert.Close(HandLogits(b, r), Logits(loaded.Model, r), 1e-5, "b");

        set.SetActive("a", "b");
        Assert.Equal(set.Get("a").ParameterCount + set.Get("b").ParameterCount, set.TrainableParameters);
        TensorAssert.Close(HandLogits(Sum(a, b), r), Logits(loaded.Model, r), 1e-5, "a + b");

        set.Disable();
        Assert.True(set.AdaptersDisabled);
        Assert.Equal(0, set.TrainableParameters);
        TensorAssert.Close(r["logits"], Logits(loaded.Model, r), 1e-5, "disabled");
        set.Enable();
        TensorAssert.Close(HandLogits(Sum(a, b), r), Logits(loaded.Model, r), 1e-5, "enabled again");

        // Merged: switching is refused until unmerged; disabling unmerges first (PEFT).
        set.MergeInPlace();
        Assert.Throws<InvalidOperationException>(() => set.SetActive("a"));
        Assert.Throws<InvalidOperationException>(() => set.Delete("a"));
        set.Disable();
        Assert.False(set.IsMerged);
        set.Enable();

        set.SetActive("a");
        set.Delete("a");
        Assert.Equal(["b"], set.Names);
        Assert.Equal(["b"], set.ActiveAdapters);
        Assert.DoesNotContain(loaded.Model.state_dict().Keys, k => k.Contains(".a.", StringComparison.Ordinal));
        TensorAssert.Close(HandLogits(b, r), Logits(loaded.Model, r), 1e-5, "b after deleting a");
        Assert.Throws<KeyNotFoundException>(() => set.SetActive("a"));
    }

    [Fact]
    public void WeightedCombinationsMatchHandComputedUpdates()
    {
        using var loaded = LoadBase(Model);
        var set = new LoraAdapterSet(loaded.Model);
        set.Add("a", Config(4, 8, "q_proj", "v_proj"), seed: 1);
        set.Add("c", Config(4, 16, "q_proj", "v_proj"), seed: 3);
        RandomizeB(set, "a", 10);
        RandomizeB(set, "c", 30);
        using var scope = NewDisposeScope();
        var r = Reference(Model);
        double[] weights = [0.7, -0.3];
        var exact = Sum(HandDelta(set, "a", weights[0]), HandDelta(set, "c", weights[1]));

        // cat: exact, rank 8, α = r.
        var cat = set.AddWeighted(["a", "c"], weights, "cat", AdapterCombinationType.Cat);
        Assert.Equal((8, 8.0, false), (cat.Config.Rank, cat.Config.Alpha, cat.IsActive));
        foreach (var (path, delta) in exact) TensorAssert.Close(delta, set.LoraLayers[path].DeltaWeight("cat"), 1e-6, "cat " + path);
        set.SetActive("cat");
        TensorAssert.Close(HandLogits(exact, r), Logits(loaded.Model, r), 1e-5, "cat logits");

        // svd at full rank 8 reproduces the exact sum; at rank 4 it is the best rank-4 approximation.
        set.AddWeighted(["a", "c"], weights, "svd", AdapterCombinationType.Svd, svdRank: 8);
        foreach (var (path, delta) in exact) TensorAssert.Close(delta, set.LoraLayers[path].DeltaWeight("svd"), 1e-5, "svd " + path);
        set.AddWeighted(["a", "c"], weights, "svd4", AdapterCombinationType.Svd, svdRank: 4);
        foreach (var (path, delta) in exact)
        {
            var s = linalg.svdvals(delta);
            var error = linalg.matrix_norm(delta - set.LoraLayers[path].DeltaWeight("svd4")).item<float>();
            Assert.Equal(s[4..].pow(2).sum().sqrt().item<float>(), error, 1e-4); // Eckart–Young
        }

        // linear (PEFT): A = Σ sign(wᵢ)·√|wᵢsᵢ|·Aᵢ, B = Σ √|wᵢsᵢ|·Bᵢ; not the exact sum.
        set.AddWeighted(["a", "c"], weights, "linear", AdapterCombinationType.Linear);
        var linear = new Dictionary<string, Tensor>();
        foreach (var path in exact.Keys)
        {
            var layer = set.LoraLayers[path];
            double sa = Math.Sqrt(Math.Abs(weights[0] * 2.0)), sc = Math.Sqrt(Math.Abs(weights[1] * 4.0));
            var aLin = sa * layer.LoraA("a") - sc * layer.LoraA("c");
            var bLin = sa * layer.LoraB("a") + sc * layer.LoraB("c");
            linear[path] = bLin.matmul(aLin).detach();
            TensorAssert.Close(linear[path], layer.DeltaWeight("linear"), 1e-6, "linear " + path);
        }
        set.SetActive("linear");
        TensorAssert.Close(HandLogits(linear, r), Logits(loaded.Model, r), 1e-5, "linear logits");

        Assert.Throws<ArgumentException>(() => set.AddWeighted(["a", "cat"], weights, "bad", AdapterCombinationType.Linear));
    }

    [Fact]
    public void CombinationOfAdaptersWithDifferentTargetsAndRanksSavesAndReloadsExactly()
    {
        using var folder = new TempFolder();
        using var loaded = LoadBase(Model);
        var set = new LoraAdapterSet(loaded.Model);
        set.Add("a", Config(4, 8, "q_proj", "v_proj"), seed: 1);
        set.Add("b", Config(2, 4, "q_proj", "o_proj"), seed: 2);
        RandomizeB(set, "a", 10);
        RandomizeB(set, "b", 20);
        using var scope = NewDisposeScope();
        var r = Reference(Model);
        var exact = Sum(HandDelta(set, "a", 0.5), HandDelta(set, "b", 2.0));

        var info = set.AddWeighted(["a", "b"], [0.5, 2.0], "mix", AdapterCombinationType.Cat);
        // q_proj has both (r 6), v_proj only a (r 4), o_proj only b (r 2): the config records the exceptions.
        Assert.Equal(6, info.Config.Rank);
        Assert.Equal(6, info.Targets.Count);
        foreach (var t in info.Targets)
            Assert.Equal(t.Path.EndsWith("q_proj", StringComparison.Ordinal) ? 6 : t.Path.EndsWith("v_proj", StringComparison.Ordinal) ? 4 : 2, t.Rank);
        Assert.All(info.Targets, t => Assert.Equal(1.0, t.Scaling));
        set.SetActive("mix");
        var logits = Logits(loaded.Model, r);
        TensorAssert.Close(HandLogits(exact, r), logits, 1e-5, "mix logits");

        set.Save(folder.Path, "mix");
        using var second = LoadBase(Model);
        var reloaded = new LoraAdapterSet(second.Model);
        var again = reloaded.Load(folder.Sub("mix"), "mix");
        Assert.Equal(info.Targets.Select(t => (t.Path, t.Rank)), again.Targets.Select(t => (t.Path, t.Rank)));
        TensorAssert.Equal(logits, Logits(second.Model, r), "reloaded mix logits");
    }
}
