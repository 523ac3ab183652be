using LoraPS.Adapters;
using Xunit;

namespace LoraPS.Tests.Adapters;

/// <summary>
/// Target selection exactly as PEFT's <c>check_target_module_exists</c> / <c>get_pattern_key</c>. Every expected value
/// here was checked against a transcription of PEFT's Python functions.
/// </summary>
public class LoraConfigTests
{
    static string Attn(int layer, string name) => $"model.layers.{layer}.self_attn.{name}";

    static LoraConfig Targets(params string[] names) => new() { TargetModules = ModuleSelection.Names(names) };

    /// <summary>The 14 linear layers of tests/fixtures/models/tiny-llama plus its lm_head.</summary>
    static readonly (string Path, long In, long Out)[] TinyLlama =
    [
        .. Enumerable.Range(0, 2).SelectMany(i => new (string, long, long)[]
        {
            (Attn(i, "q_proj"), 64, 64), (Attn(i, "k_proj"), 64, 32), (Attn(i, "v_proj"), 64, 32), (Attn(i, "o_proj"), 64, 64),
            ($"model.layers.{i}.mlp.gate_proj", 64, 128), ($"model.layers.{i}.mlp.up_proj", 64, 128), ($"model.layers.{i}.mlp.down_proj", 128, 64),
        }),
        ("lm_head", 64, 512),
    ];

    [Fact]
    public void NamesMatchWholeSegmentsNotSubstrings()
    {
        var config = Targets("q_proj");
        Assert.True(config.IsTargeted(Attn(0, "q_proj")));
        Assert.False(config.IsTargeted(Attn(0, "xq_proj")));
        Assert.False(config.IsTargeted("model.q_proj_extra"));
        Assert.False(Targets("proj").IsTargeted(Attn(0, "q_proj")));
        Assert.True(Targets("self_attn.q_proj").IsTargeted(Attn(0, "q_proj")));
        Assert.True(Targets("lm_head").IsTargeted("lm_head"));
    }

    [Fact]
    public void RegexMustMatchTheWholePath()
    {
        Assert.True(new LoraConfig { TargetModules = ModuleSelection.Regex(@".*\.(q|v)_proj") }.IsTargeted(Attn(0, "q_proj")));
        Assert.False(new LoraConfig { TargetModules = ModuleSelection.Regex("q_proj") }.IsTargeted(Attn(0, "q_proj")));
        Assert.False(new LoraConfig { TargetModules = ModuleSelection.Regex(@".*layers\.1\..*") }.IsTargeted(Attn(0, "q_proj")));
        // Python's named-group spelling works too.
        Assert.True(new LoraConfig { TargetModules = ModuleSelection.Regex(@".*\.(?P<which>q|v)_proj") }.IsTargeted(Attn(1, "v_proj")));
    }

    [Fact]
    public void AllLinearIsCaseInsensitive()
    {
        Assert.Same(ModuleSelection.AllLinear, ModuleSelection.FromString("ALL-Linear"));
    }

    [Fact]
    public void ExclusionsAreCheckedFirst()
    {
        var byName = Targets("q_proj", "v_proj") with { ExcludeModules = ModuleSelection.Names("layers.1.self_attn.q_proj") };
        Assert.False(byName.IsTargeted(Attn(1, "q_proj")));
        Assert.True(byName.IsTargeted(Attn(0, "q_proj")));

        var byRegex = Targets("q_proj") with { ExcludeModules = ModuleSelection.Regex(@".*\.1\..*") };
        Assert.False(byRegex.IsTargeted(Attn(1, "q_proj")));
        Assert.True(byRegex.IsTargeted(Attn(0, "q_proj")));
    }

    [Fact]
    public void ModulesToSaveNeverGetLora()
    {
        var config = Targets("dense") with { ModulesToSave = ["classifier"] };
        Assert.False(config.IsTargeted("classifier.dense"));
        Assert.True(config.IsTargeted("roberta.encoder.layer.0.output.dense"));
    }

    [Fact]
    public void LayersToTransformFiltersSuffixMatchesByLayerIndex()
    {
        var config = Targets("q_proj") with { LayersToTransform = [1] };
        Assert.True(config.IsTargeted(Attn(1, "q_proj")));
        Assert.False(config.IsTargeted(Attn(0, "q_proj")));
        // An empty list means "all layers".
        Assert.True((Targets("q_proj") with { LayersToTransform = [] }).IsTargeted(Attn(0, "q_proj")));
        // A full path given exactly bypasses the filter, as in PEFT.
        Assert.True((Targets(Attn(0, "q_proj")) with { LayersToTransform = [1] }).IsTargeted(Attn(0, "q_proj")));
        // PEFT needs a dot before the layer list's name: a top-level "layers.0" has no index.
        Assert.False((Targets("q_proj") with { LayersToTransform = [0] }).IsTargeted("layers.0.q_proj"));
    }

    [Fact]
    public void LayerIndexIsTheLastNumberedSegmentUnlessAPatternIsGiven()
    {
        const string path = "encoder.layer.3.attention.blocks.1.q";
        var noPattern = Targets("q") with { LayersToTransform = [1] };
        Assert.Equal(1, noPattern.LayerIndex(path));
        Assert.True(noPattern.IsTargeted(path));
        Assert.False((Targets("q") with { LayersToTransform = [3] }).IsTargeted(path));

        var withPattern = Targets("q") with { LayersToTransform = [3], LayersPattern = ["layer"] };
        Assert.Equal(3, withPattern.LayerIndex(path));
        Assert.True(withPattern.IsTargeted(path));
        Assert.False((withPattern with { LayersToTransform = [1] }).IsTargeted(path));
    }

    [Fact]
    public void RankAndAlphaPatternsFollowGetPatternKey()
    {
        var config = Targets("q_proj", "v_proj") with
        {
            Rank = 8,
            Alpha = 16,
            RankPattern = new Dictionary<string, int> { ["layers.1.self_attn.q_proj"] = 4, ["q_proj|v_proj"] = 16 },
            AlphaPattern = new Dictionary<string, double> { ["0.self_attn.q_proj"] = 2 },
        };
        var q0 = config.OptionsFor(Attn(0, "q_proj"));
        Assert.Equal((16, 2.0), (q0.Rank, q0.Alpha));
        var q1 = config.OptionsFor(Attn(1, "q_proj"));
        Assert.Equal((4, 16.0), (q1.Rank, q1.Alpha));
        Assert.Equal(16, config.OptionsFor(Attn(1, "v_proj")).Rank);

        // "proj" is not a whole trailing segment of "...q_proj", so it falls back to r.
        var suffixOnly = Targets("q_proj") with { RankPattern = new Dictionary<string, int> { ["proj"] = 2 } };
        Assert.Equal(8, suffixOnly.OptionsFor(Attn(0, "q_proj")).Rank);

        // The first key that matches wins, in dictionary order.
        var ordered = Targets("q_proj") with { RankPattern = new Dictionary<string, int> { [".*q_proj"] = 2, ["q_proj"] = 4 } };
        Assert.Equal(2, ordered.OptionsFor(Attn(0, "q_proj")).Rank);
    }

    [Fact]
    public void ScalingIsAlphaOverRankOrOverSqrtRankWithRsLora()
    {
        var config = Targets("q_proj") with { Rank = 4, Alpha = 8 };
        Assert.Equal(2.0, config.OptionsFor(Attn(0, "q_proj")).Scaling);
        Assert.Equal(4.0, (config with { UseRsLora = true }).OptionsFor(Attn(0, "q_proj")).Scaling);
    }

    [Fact]
    public void ResolveReturnsMatchedLayersWithTheirSettings()
    {
        var resolution = (Targets("q_proj", "down_proj") with { Rank = 4, Alpha = 8, RankPattern = new Dictionary<string, int> { ["down_proj"] = 2 } })
            .Resolve(TinyLlama, "lm_head");
        Assert.Equal(
            [Attn(0, "q_proj"), "model.layers.0.mlp.down_proj", Attn(1, "q_proj"), "model.layers.1.mlp.down_proj"],
            resolution.Targets.Select(t => t.Path));
        var down = resolution.Targets[1];
        Assert.Equal((128L, 64L, 2, 8.0, 4.0), (down.InFeatures, down.OutFeatures, down.Rank, down.Alpha, down.Scaling));
    }

    [Fact]
    public void AllLinearSkipsTheOutputHeadAndSavesTheResolvedNames()
    {
        var resolution = new LoraConfig { TargetModules = ModuleSelection.AllLinear, Rank = 4 }.Resolve(TinyLlama, "lm_head");
        Assert.Equal(14, resolution.Targets.Count);
        Assert.DoesNotContain(resolution.Targets, t => t.Path == "lm_head");
        Assert.Equal(
            ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
            resolution.Config.TargetModules!.ModuleNames);
    }

    [Fact]
    public void UnsetTargetsTakeTheArchitectureDefault()
    {
        var resolution = new LoraConfig { Rank = 4 }.Resolve(TinyLlama, "lm_head", modelType: "llama");
        Assert.Equal([Attn(0, "q_proj"), Attn(0, "v_proj"), Attn(1, "q_proj"), Attn(1, "v_proj")], resolution.Targets.Select(t => t.Path));
        Assert.Equal(ModuleSelection.Names("q_proj", "v_proj"), resolution.Config.TargetModules);

        var error = Assert.Throws<ArgumentException>(() => new LoraConfig { Rank = 4 }.Resolve(TinyLlama, "lm_head", modelType: "made-up"));
        Assert.Contains("made-up", error.Message);
    }

    [Fact]
    public void NewConfigDefaultsFollowLitGpt()
    {
        var config = new LoraConfig();
        Assert.Equal((8, 16.0, 0.05), (config.Rank, config.Alpha, config.Dropout));
        Assert.Null(config.TargetModules);
        Assert.Equal(["q_proj", "v_proj"], ArchitectureDefaults.DefaultTargetModules("llama"));
        Assert.Equal(["c_attn"], ArchitectureDefaults.DefaultTargetModules("gpt2"));
        Assert.Equal(["query", "value"], ArchitectureDefaults.DefaultTargetModules("bert"));
    }

    [Fact]
    public void NothingMatchedListsTheLayerNamesThatExist()
    {
        var error = Assert.Throws<ArgumentException>(() => Targets("query").Resolve(TinyLlama, "lm_head"));
        Assert.Contains("matched none", error.Message);
        Assert.Contains("down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj", error.Message);
    }

    [Fact]
    public void RankAboveTheLayerSizeIsRefused()
    {
        var error = Assert.Throws<ArgumentException>(() => (Targets("k_proj") with { Rank = 33 }).Resolve(TinyLlama, "lm_head"));
        Assert.Contains("model.layers.0.self_attn.k_proj", error.Message);
        Assert.Contains("min(in, out) = 32", error.Message);
    }

    [Fact]
    public void ScalarRangesAreCheckedWhenSet()
    {
        Assert.Contains("at least 1", Assert.Throws<ArgumentOutOfRangeException>(() => new LoraConfig { Rank = 0 }).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraConfig { Alpha = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraConfig { Alpha = -16 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraConfig { Alpha = double.NaN });
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraConfig { Dropout = 1.0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraConfig { Dropout = -0.1 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraConfig { RankPattern = new Dictionary<string, int> { ["q_proj"] = 0 } });
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraLayerOptions { Rank = -1, Alpha = 1 });
    }

    [Fact]
    public void BadRegularExpressionsAreReportedWithThePattern()
    {
        var error = Assert.Throws<ArgumentException>(() => ModuleSelection.Regex("(q_proj"));
        Assert.Contains("'(q_proj'", error.Message);
        Assert.Throws<ArgumentException>(() => new LoraConfig { RankPattern = new Dictionary<string, int> { ["[q"] = 4 } });
        Assert.Throws<ArgumentException>(() => ModuleSelection.Names("q_proj", " "));
    }

    [Fact]
    public void LayerFiltersNeedListTargets()
    {
        var config = new LoraConfig { TargetModules = ModuleSelection.Regex(@".*q_proj"), LayersToTransform = [0] };
        Assert.Contains("LayersToTransform", Assert.Throws<ArgumentException>(config.Validate).Message);
        Assert.Throws<ArgumentException>(() => config.Resolve(TinyLlama, "lm_head"));
        Assert.Throws<ArgumentException>(() => new LoraConfig { ExcludeModules = ModuleSelection.AllLinear });
    }
}
