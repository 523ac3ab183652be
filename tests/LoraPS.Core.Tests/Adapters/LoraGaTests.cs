using LoraPS.Adapters;
using LoraPS.Data;
using LoraPS.Training;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// LoRA-GA against tests/fixtures/lora_ga (the official Outsider565/LoRA-GA code on tiny-llama, r=4, α=8, ArB2r,
/// stable, γ=16): the gradient estimate, A and B, the rewritten base weight, and the unchanged output.
/// </summary>
public class LoraGaTests
{
    const int Rank = 4;
    const double Scaling = 2.0; // α/r = 8/4

    static readonly string[] Modules = [.. new[] { 0, 1 }.SelectMany(i => new[]
    {
        $"model.layers.{i}.self_attn.q_proj", $"model.layers.{i}.self_attn.k_proj", $"model.layers.{i}.self_attn.v_proj",
        $"model.layers.{i}.self_attn.o_proj", $"model.layers.{i}.mlp.gate_proj", $"model.layers.{i}.mlp.up_proj", $"model.layers.{i}.mlp.down_proj",
    })];

    static string GradsFile => AdapterTestFiles.Fixture("lora_ga", "grads.safetensors");

    static LoraConfig FixtureConfig => new()
    {
        Rank = Rank,
        Alpha = 8,
        TargetModules = ModuleSelection.Names("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    };

    [Fact]
    public void FactorsFromTheOfficialRunsSingularVectorsEqualItsAAndB()
    {
        // The official run's svd_lowrank is randomised; given its recorded U, S, V the remaining steps are deterministic.
        using var scope = NewDisposeScope();
        var official = ReadAll(AdapterTestFiles.Fixture("lora_ga", "official", "tensors.safetensors"));
        foreach (var m in Modules)
        {
            var (a, b) = LoraGaFactors.FromSingularVectors(official[$"{m}.svd_lowrank.U"], official[$"{m}.svd_lowrank.S"], official[$"{m}.svd_lowrank.V"].t(),
                official[$"{m}.weight_orig"], Rank, Scaling, new LoraGaOptions(), generator: null);
            TensorAssert.Close(official[$"{m}.lora_A"], a, 1e-7, $"{m} lora_A");
            TensorAssert.Close(official[$"{m}.lora_B"], b, 1e-7, $"{m} lora_B");
        }
    }

    [Fact]
    public void ExactSvdFactorsEqualTheFixturesExactVariant()
    {
        using var scope = NewDisposeScope();
        var grads = ReadAll(GradsFile);
        var exact = ReadAll(AdapterTestFiles.Fixture("lora_ga", "exact_svd", "tensors.safetensors"));
        var official = ReadAll(AdapterTestFiles.Fixture("lora_ga", "official", "tensors.safetensors"));
        foreach (var m in Modules)
        {
            var (a, b) = LoraGaFactors.Compute(grads[$"{m}.weight"], official[$"{m}.weight_orig"], Rank, Scaling, new LoraGaOptions { SvdIterations = null });
            // Fixture README: exact SVD in float64 with the same sign convention; 1e-5 allows LAPACK rounding.
            TensorAssert.Close(exact[$"{m}.lora_A"], a, 1e-5, $"{m} lora_A");
            TensorAssert.Close(exact[$"{m}.lora_B"], b, 1e-5, $"{m} lora_B");
        }
    }

    [Fact]
    public void RandomizedFactorsApproximateTheExactOnes()
    {
        // svd_lowrank with its own random stream (q = 4r = 16, niter = 4): the top-r right vectors (A) come out as the
        // exact ones up to sign; B's vectors r..2r−1 have close singular values here (0.236, 0.229, 0.200, 0.193, 0.186
        // in q_proj), so they may rotate among themselves — what must hold is that B·Bᵀ·G + G·Aᵀ·A keeps the exact
        // rank-2r projection's share of the gradient.
        using var scope = NewDisposeScope();
        var grads = ReadAll(GradsFile);
        var exact = ReadAll(AdapterTestFiles.Fixture("lora_ga", "exact_svd", "tensors.safetensors"));
        var official = ReadAll(AdapterTestFiles.Fixture("lora_ga", "official", "tensors.safetensors"));
        using var g = new Generator(5);
        foreach (var m in Modules)
        {
            var grad = grads[$"{m}.weight"];
            var (a, b) = LoraGaFactors.Compute(grad, official[$"{m}.weight_orig"], Rank, Scaling, new LoraGaOptions(), g);
            var signA = (a * exact[$"{m}.lora_A"]).sum(1).sign().unsqueeze(1);
            TensorAssert.Close(exact[$"{m}.lora_A"], a * signA, 1e-3, $"{m} lora_A");
            double Captured(Tensor aa, Tensor bb)
            {
                var qa = aa / aa.norm(1).unsqueeze(1);
                var qb = bb / bb.norm(0).unsqueeze(0);
                return (qb.matmul(qb.t()).matmul(grad) + grad.matmul(qa.t()).matmul(qa)).norm().item<float>();
            }
            Assert.InRange(Captured(a, b) / Captured(exact[$"{m}.lora_A"], exact[$"{m}.lora_B"]), 0.99, 1.01);
        }
    }

    [Fact]
    public void GradientEstimateEqualsAutogradsOnTheFixtureBatch()
    {
        using var scope = NewDisposeScope();
        using var loaded = LoadBase("tiny-llama");
        var reference = Reference("tiny-llama");
        using var estimate = GradientEstimate.Estimate(loaded.Model, Modules, [FixtureBatch(reference)]);
        var grads = ReadAll(GradsFile);
        Assert.Equal(1, estimate.Batches);
        Assert.Equal(grads["loss"].item<float>(), estimate.MeanLoss, 1e-5);
        foreach (var m in Modules) TensorAssert.Close(grads[$"{m}.weight"], estimate.Gradients[m], 1e-5, m);
        Assert.All(loaded.Model.parameters(), p => Assert.Null(p.grad));
    }

    [Fact]
    public void GradientOfTwoBatchesIsTheirMean()
    {
        using var scope = NewDisposeScope();
        using var loaded = LoadBase("tiny-llama");
        var reference = Reference("tiny-llama");
        var paths = Modules.Take(2).ToList();
        using var once = GradientEstimate.Estimate(loaded.Model, paths, [FixtureBatch(reference)]);
        using var twice = GradientEstimate.Estimate(loaded.Model, paths, [FixtureBatch(reference), FixtureBatch(reference)]);
        foreach (var p in paths) TensorAssert.Close(once.Gradients[p], twice.Gradients[p], 1e-7, p);
    }

    [Fact]
    public void InitializationMatchesTheFixtureAndKeepsTheLogits()
    {
        using var folder = new TempFolder();
        File.Copy(GradsFile, folder.Sub("grads.safetensors"));
        using var scope = NewDisposeScope();
        using var loaded = LoadBase("tiny-llama");
        var reference = Reference("tiny-llama");
        var before = Logits(loaded.Model, reference);
        var set = new LoraAdapterSet(loaded.Model);
        var result = LoraGaInitializer.Initialize(set, "default", FixtureConfig, data: null, new LoraGaOptions { SvdIterations = null }, folder.Sub("grads.safetensors"));

        Assert.True(result.UsedCachedGradients);
        Assert.Equal(14, result.Layers);
        TensorAssert.Close(before, Logits(loaded.Model, reference), 1e-5, "logits after init");
        var exact = ReadAll(AdapterTestFiles.Fixture("lora_ga", "exact_svd", "tensors.safetensors"));
        foreach (var m in Modules)
        {
            var layer = set.LoraLayers[m];
            TensorAssert.Close(exact[$"{m}.lora_A"], layer.LoraA("default"), 1e-5, m);
            TensorAssert.Close(exact[$"{m}.lora_B"], layer.LoraB("default"), 1e-5, m);
            TensorAssert.Close(exact[$"{m}.weight_adjusted"], layer.BaseLayer.weight!, 1e-5, m);
        }
        Assert.Equal(LoraInit.LoraGA, set.Get("default").Config.Init);
        Assert.True(set.SavesConverted("default"));
    }

    [Fact]
    public void GradientCacheRoundTripsAndIsReused()
    {
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        using var loaded = LoadBase("tiny-llama");
        var reference = Reference("tiny-llama");
        using (var estimate = GradientEstimate.Estimate(loaded.Model, Modules, [FixtureBatch(reference)])) estimate.Save(folder.Sub("g.safetensors"));
        using var back = GradientEstimate.Load(folder.Sub("g.safetensors"));
        var grads = ReadAll(GradsFile);
        Assert.Equal(1, back.Batches);
        foreach (var m in Modules) TensorAssert.Close(grads[$"{m}.weight"], back.Gradients[m], 1e-5, m);
    }

    [Fact]
    public void CacheForOtherTargetsIsRefusedBeforeAnythingChanges()
    {
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        using var loaded = LoadBase("tiny-llama");
        var reference = Reference("tiny-llama");
        using (var estimate = GradientEstimate.Estimate(loaded.Model, Modules.Take(1).ToList(), [FixtureBatch(reference)])) estimate.Save(folder.Sub("g.safetensors"));
        var set = new LoraAdapterSet(loaded.Model);
        var weight = set.BaseWeightAt(Modules[1]).clone();
        var e = Assert.Throws<ArgumentException>(() => LoraGaInitializer.Initialize(set, "default", FixtureConfig, null, new LoraGaOptions(), folder.Sub("g.safetensors")));
        Assert.Contains(Modules[1], e.Message);
        Assert.Empty(set.Names);
        TensorAssert.Equal(weight, set.BaseWeightAt(Modules[1]));
    }

    [Theory]
    [InlineData(LoraGaDirection.ArB2r, LoraGaScale.Stable, LoraGaVariant.Official)]
    [InlineData(LoraGaDirection.A2rBr, LoraGaScale.GD, LoraGaVariant.Official)]
    [InlineData(LoraGaDirection.ArBr, LoraGaScale.Unit, LoraGaVariant.Official)]
    [InlineData(LoraGaDirection.Random, LoraGaScale.WeightS, LoraGaVariant.Official)]
    [InlineData(LoraGaDirection.ArB2r, LoraGaScale.Stable, LoraGaVariant.Peft)]
    [InlineData(LoraGaDirection.Random, LoraGaScale.WeightS, LoraGaVariant.Peft)]
    public void EveryDirectionAndScaleFollowsItsFormula(LoraGaDirection direction, LoraGaScale scale, LoraGaVariant variant)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var grad = TensorAssert.Random(g, 24, 16);
        var weight = TensorAssert.Random(g, 24, 16);
        var options = new LoraGaOptions { Direction = direction, Scale = scale, Variant = variant, SvdIterations = null, StableGamma = 9 };
        var (a, b) = LoraGaFactors.Compute(grad, weight, 3, 0.5, options, new Generator(1));
        Assert.Equal([3L, 16], a.shape);
        Assert.Equal([24L, 3], b.shape);
        // A's rows and B's columns are distinct singular vectors of G: B·Bᵀ·G + G·Aᵀ·A is G's projection on 2r of them.
        var (u, s, vh) = LoraGaFactors.Decompose(grad, 6, 6, null, null);
        var aDir = a / a.norm(1).unsqueeze(1);
        var bDir = b / b.norm(0).unsqueeze(0);
        var overlapA = aDir.matmul(vh.t()).abs();
        var overlapB = bDir.t().matmul(u).abs();
        TensorAssert.Close(ones(3), overlapA.max(1).values, 1e-4, "A rows are right singular vectors");
        TensorAssert.Close(ones(3), overlapB.max(1).values, 1e-4, "B columns are left singular vectors");
        var usedA = overlapA.argmax(1);
        var usedB = overlapB.argmax(1);
        if (variant == LoraGaVariant.Official)
            Assert.Empty(usedA.data<long>().ToArray().Intersect(usedB.data<long>().ToArray()));
        double stable = Math.Pow(24, 0.25) / 3;
        double rowA = a.norm(1).mean().item<float>(), colB = b.norm(0).mean().item<float>();
        switch (scale, variant)
        {
            case (LoraGaScale.Stable, LoraGaVariant.Official):
                Assert.Equal(stable, rowA, 1e-5);
                Assert.Equal(stable, colB, 1e-5);
                break;
            case (LoraGaScale.Stable, LoraGaVariant.Peft):
                Assert.Equal(1, rowA, 1e-5);
                TensorAssert.Close(s[3..6] * stable, b.norm(0), 1e-4, "PEFT: B = U·S·stable");
                break;
            case (LoraGaScale.GD, _):
                Assert.Equal(2, rowA, 1e-5);
                break;
            case (LoraGaScale.Unit, _):
                Assert.Equal(1, rowA, 1e-5);
                Assert.Equal(1, colB, 1e-5);
                break;
            case (LoraGaScale.WeightS, LoraGaVariant.Official):
                double mean = (linalg.svdvals(weight)[..3] / 0.5).sqrt().mean().item<float>();
                Assert.Equal(mean, rowA, 1e-4);
                break;
        }
    }

    [Fact]
    public void RankAboveHalfTheLayerIsRefused()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var e = Assert.Throws<ArgumentException>(() => LoraGaFactors.Compute(TensorAssert.Random(g, 8, 6), TensorAssert.Random(g, 8, 6), 4, 1, new LoraGaOptions()));
        Assert.Contains("r <= 3", e.Message);
    }

    [Fact]
    public void NonFloatLinearIsRefusedByName()
    {
        using var scope = NewDisposeScope();
        using var embedding = nn.Embedding(10, 4);
        var e = Assert.Throws<NotSupportedException>(() => LoraAdapterSet.BaseWeightOf(embedding, "model.embed_tokens"));
        Assert.Contains("not a plain floating-point Linear", e.Message);
        Assert.Contains("model.embed_tokens", e.Message);
    }

    [Fact]
    public void PlainAddOfLoraGaPointsToTheInitializer()
    {
        using var loaded = LoadBase("tiny-llama");
        var set = new LoraAdapterSet(loaded.Model);
        var e = Assert.Throws<NotSupportedException>(() => set.Add("x", FixtureConfig with { Init = LoraInit.LoraGA }));
        Assert.Contains("Initialize-LoraGA", e.Message);
        Assert.Equal(LoraInit.LoraGA, LoraInit.Parse("lora_ga"));
        Assert.Equal("lora_ga", LoraInit.LoraGA.ToPeftValue());
    }

    internal static TrainingBatch FixtureBatch(Dictionary<string, Tensor> reference)
    {
        var ids = reference["input_ids"];
        var examples = Enumerable.Range(0, (int)ids.shape[0]).Select(i =>
        {
            var row = ids[i].data<long>().ToArray();
            return new TokenizedExample(row, (long[])row.Clone(), 0);
        }).ToList();
        return BatchCollator.Collate(examples);
    }
}
