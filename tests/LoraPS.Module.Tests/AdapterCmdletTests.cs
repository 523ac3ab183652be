using System.Management.Automation;
using System.Text.Json;
using LoraPS.Adapters;
using LoraPS.Models;
using LoraPS.Module.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Module.Tests;

/// <summary>The adapter cmdlets through a real runspace, on the bundled stories260K.</summary>
[Collection(ModuleCollection.Name)]
public sealed class AdapterCmdletTests(RunspaceFixture fixture) : IDisposable
{
    readonly string _temp = Directory.CreateTempSubdirectory("loraps-adapter-cmdlets-").FullName;

    public void Dispose()
    {
        // Every test keeps its models in $am* variables; release them so the shared runspace does not grow.
        foreach (var variable in _variables)
            fixture.Invoke($"if (${variable} -is [LoraPS.Models.LoraModel]) {{ Remove-LoraModel ${variable} }}; ${variable} = $null");
        Directory.Delete(_temp, recursive: true);
    }

    readonly HashSet<string> _variables = [];

    (IReadOnlyList<PSObject> Output, IReadOnlyList<ErrorRecord> Errors) Run(string script)
    {
        foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(script, @"\$(am\w+)\s*=")) _variables.Add(m.Groups[1].Value);
        return fixture.Invoke(script);
    }

    IReadOnlyList<PSObject> RunClean(string script)
    {
        var (output, errors) = Run(script);
        Assert.True(errors.Count == 0, string.Join("\n", errors.Select(e => $"{e.FullyQualifiedErrorId}: {e.Exception.Message}")));
        return output;
    }

    LoraModel Model(string variable) => Assert.IsType<LoraModel>(RunClean("$" + variable).Single().BaseObject);

    /// <summary>Gives every LoRA B factor of <paramref name="adapter"/> random values, so the adapter changes the output (B starts at zero).</summary>
    static void Perturb(LoraModel model, string adapter, long seed)
    {
        using var generator = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var layer in model.Adapters.LoraLayers.Values.Where(l => l.Adapters.Contains(adapter)))
            layer.LoraB(adapter).normal_(0, 0.5, generator);
    }

    static float[] Logits(LoraModel model)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(new long[] { 1, 403, 407, 261, 378, 200 }).unsqueeze(0);
        return model.Network.forward(ids).to_type(ScalarType.Float32).data<float>().ToArray();
    }

    static string Greedy(LoraModel model) =>
        LoraPS.Generation.TextGenerator.Generate(model.Network, model.Tokenizer, new LoraPS.Generation.GenerationRequest { Prompt = "Once upon a time", MaxNewTokens = 30 }).Completion;

    // ---- New-LoraConfig ---------------------------------------------------------------------------------

    [Fact]
    public void NewLoraConfigDefaultsToPeftsValues()
    {
        var config = Assert.IsType<LoraConfig>(RunClean("New-LoraConfig").Single().BaseObject);
        Assert.Equal(new LoraConfig(), config);
        Assert.Equal((8, 16.0, 0.05), (config.Rank, config.Alpha, config.Dropout));
    }

    [Fact]
    public void SeveralRanksAlphasAndDropoutsMakeAGrid()
    {
        var configs = RunClean("New-LoraConfig -Rank 4, 8 -Alpha 16, 32 -Dropout 0, 0.1 -TargetModules q_proj, v_proj -UseRsLora")
            .Select(o => Assert.IsType<LoraConfig>(o.BaseObject)).ToList();
        Assert.Equal(8, configs.Count);
        Assert.Equal(
            new[] { (4, 16.0, 0.0), (4, 16.0, 0.1), (4, 32.0, 0.0), (4, 32.0, 0.1), (8, 16.0, 0.0), (8, 16.0, 0.1), (8, 32.0, 0.0), (8, 32.0, 0.1) },
            configs.Select(c => (c.Rank, c.Alpha, c.Dropout)));
        Assert.All(configs, c => Assert.Equal(ModuleSelection.Names("q_proj", "v_proj"), c.TargetModules));
        Assert.All(configs, c => Assert.True(c.UseRsLora));
    }

    [Fact]
    public void TargetModulesTakesNamesAllLinearOrARegex()
    {
        var output = RunClean(
            "(New-LoraConfig -TargetModules q_proj).TargetModules; (New-LoraConfig -TargetModules all-linear).TargetModules; " +
            @"(New-LoraConfig -TargetModules '.*\.layers\.0\..*_proj').TargetModules; " +
            "New-LoraConfig -RankPattern ([ordered]@{ v_proj = 2; 'layers\\.1\\..*' = 3 }) -AlphaPattern @{ v_proj = 4 } -Init PiSSA -Bias lora_only -UseDora -TaskType CausalLM -ModulesToSave lm_head");
        Assert.Equal(ModuleSelection.Names("q_proj"), output[0].BaseObject);
        Assert.Equal(ModuleSelectionKind.AllLinear, ((ModuleSelection)output[1].BaseObject).Kind);
        Assert.Equal(ModuleSelectionKind.Regex, ((ModuleSelection)output[2].BaseObject).Kind);
        var config = Assert.IsType<LoraConfig>(output[3].BaseObject);
        Assert.Equal(new[] { "v_proj", @"layers\.1\..*" }, config.RankPattern.Keys);
        Assert.Equal(new[] { 2, 3 }, config.RankPattern.Values);
        Assert.Equal(4.0, config.AlphaPattern["v_proj"]);
        Assert.Equal(LoraInit.PiSSA, config.Init);
        Assert.Equal(LoraBiasMode.LoraOnly, config.Bias);
        Assert.True(config.UseDora);
        Assert.Equal(PeftTaskType.CausalLM, config.TaskType);
        Assert.Equal(new[] { "lm_head" }, config.ModulesToSave);
    }

    [Theory]
    [InlineData("-Rank 0", "at least 1")]
    [InlineData("-Rank 4, -1", "at least 1")]
    [InlineData("-Alpha 0", "positive")]
    [InlineData("-Dropout 1", "[0, 1)")]
    [InlineData("-TargetModules all-linear -LayersToTransform 0", "LayersToTransform")]
    [InlineData("-RankPattern @{ v_proj = 'x' }", "whole number")]
    [InlineData("-RankPattern @{ v_proj = 0 }", "at least 1")]
    [InlineData("-TargetModules '(unclosed'", "")]
    public void BadConfigValuesAreInvalidArgumentWithWhatIsAllowed(string arguments, string hint)
    {
        var (output, errors) = Run($"New-LoraConfig {arguments}");
        Assert.Empty(output);
        var error = Assert.Single(errors);
        Assert.StartsWith("InvalidArgument,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Contains(hint, error.Exception.Message);
    }

    [Fact]
    public void UnknownBiasOrInitIsRejectedAtBinding()
    {
        var (_, errors) = Run("New-LoraConfig -Bias some");
        Assert.StartsWith("ParameterArgumentValidationError", Assert.Single(errors).FullyQualifiedErrorId);
        (_, errors) = Run("New-LoraConfig -Init LoftQ");
        Assert.StartsWith("ParameterArgumentValidationError", Assert.Single(errors).FullyQualifiedErrorId);
    }

    // ---- Add / Get / Set / Remove / Join ----------------------------------------------------------------

    [Fact]
    public void AddReportsTheSameTrainableCountsAsCore()
    {
        var state = Assert.IsType<LoraAdapterState>(RunClean(
            "$amAdd = Import-LoraModel; New-LoraConfig -Rank 4 -Alpha 8 -TargetModules all-linear | Add-LoraAdapter -Model $amAdd -Seed 1").Single().BaseObject);
        var model = Model("amAdd");
        var counts = model.Adapters.CountParameters();
        Assert.Equal(counts.Trainable, state.TrainableParameters);
        Assert.Equal(counts.Total, state.TotalParameters);
        Assert.Equal(counts.TrainablePercent, state.TrainablePercent);
        Assert.Equal(model.TrainableParameters, state.TrainableParameters);
        var info = model.Adapters.Get("default");
        Assert.Equal(info.Targets.Sum(t => 4 * (t.InFeatures + t.OutFeatures)), state.TrainableParameters);
        Assert.Equal(state.TrainableParameters, state.AdapterParameters);
        Assert.Equal(info.Targets.Count, state.TargetCount);
        Assert.Equal(7 * model.Layers, state.TargetCount); // q k v o gate up down per layer; all-linear skips lm_head
        Assert.Equal(("default", 4, 8.0, true, false, true), (state.Name, state.Rank, state.Alpha, state.IsActive, state.IsMerged, state.IsTrainable));
        Assert.Equal(260_032 + state.TrainableParameters, state.TotalParameters);
    }

    [Fact]
    public void AddWithASeedIsReproducible()
    {
        RunClean("$amSeed1 = Import-LoraModel; $amSeed2 = Import-LoraModel; " +
                 "$c = New-LoraConfig -Rank 2 -Init Gaussian; Add-LoraAdapter $amSeed1 $c -Seed 7 | Out-Null; Add-LoraAdapter $amSeed2 $c -Seed 7 | Out-Null");
        var a = Model("amSeed1").Adapters.LoraLayers.Values.First().LoraA("default").data<float>().ToArray();
        var b = Model("amSeed2").Adapters.LoraLayers.Values.First().LoraA("default").data<float>().ToArray();
        Assert.Equal(a, b);
    }

    [Fact]
    public void AddOfAConfigThatMatchesNothingListsTheLayerNames()
    {
        var (_, errors) = Run("$amNone = Import-LoraModel; New-LoraConfig -TargetModules query, value | Add-LoraAdapter -Model $amNone");
        var error = Assert.Single(errors);
        Assert.StartsWith("InvalidArgument,", error.FullyQualifiedErrorId);
        Assert.Contains("q_proj", error.Exception.Message);
        Assert.Empty(Model("amNone").Adapters.Names);
    }

    [Fact]
    public void AddOfATakenNameIsAnError()
    {
        var (_, errors) = Run("$amTwice = Import-LoraModel; $c = New-LoraConfig; Add-LoraAdapter $amTwice $c | Out-Null; Add-LoraAdapter $amTwice $c");
        Assert.StartsWith("InvalidArgument,", Assert.Single(errors).FullyQualifiedErrorId);
    }

    [Fact]
    public void GetFiltersByWildcardAndReportsMissingNames()
    {
        var output = RunClean(
            "$amGet = Import-LoraModel; $c = New-LoraConfig -Rank 2; Add-LoraAdapter $amGet $c | Out-Null; " +
            "Add-LoraAdapter $amGet $c -Name second | Out-Null; Add-LoraAdapter $amGet $c -Name third | Out-Null; " +
            "(Get-LoraAdapter $amGet).Name; '--'; Get-LoraAdapter $amGet -Name 's*', 'default' | ForEach-Object { $_.Name; $_.IsActive }");
        Assert.Equal(new object[] { "default", "second", "third", "--", "second", false, "default", true }, output.Select(o => o.BaseObject));

        var (found, errors) = Run("Get-LoraAdapter $amGet -Name nope, third");
        var error = Assert.Single(errors);
        Assert.StartsWith("AdapterNotFound,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, error.CategoryInfo.Category);
        Assert.Contains("default, second, third", error.Exception.Message);
        Assert.Equal("third", ((LoraAdapterState)Assert.Single(found).BaseObject).Name);
    }

    [Fact]
    public void SetActivatesDisablesAndEnables()
    {
        RunClean("$amSet = Import-LoraModel; $c = New-LoraConfig -Rank 2; Add-LoraAdapter $amSet $c | Out-Null; Add-LoraAdapter $amSet $c -Name b | Out-Null");
        var model = Model("amSet");
        Perturb(model, "default", 1);
        Perturb(model, "b", 2);
        float[] withDefault = Logits(model);
        using (model.Adapters.DisabledScope()) { }

        var states = RunClean("Set-LoraAdapter $amSet -Name b -PassThru").Select(o => (LoraAdapterState)o.BaseObject).ToList();
        Assert.Equal(new[] { ("default", false), ("b", true) }, states.Select(s => (s.Name, s.IsActive)));
        Assert.Equal(new[] { "b" }, model.Adapters.ActiveAdapters);
        float[] withB = Logits(model);
        Assert.NotEqual(withDefault, withB);

        RunClean("Set-LoraAdapter $amSet -Name default, b");
        Assert.Equal(new[] { "default", "b" }, model.Adapters.ActiveAdapters);

        RunClean("Set-LoraAdapter $amSet -Disable");
        Assert.True(model.Adapters.AdaptersDisabled);
        float[] disabled = Logits(model);
        RunClean("Set-LoraAdapter $amSet -Enable; Set-LoraAdapter $amSet -Name default");
        Assert.False(model.Adapters.AdaptersDisabled);
        Assert.Equal(withDefault, Logits(model));
        Assert.NotEqual(withDefault, disabled);

        var (_, errors) = Run("Set-LoraAdapter $amSet -Name missing");
        Assert.StartsWith("AdapterNotFound,", Assert.Single(errors).FullyQualifiedErrorId);
        Assert.Equal(new[] { "default" }, model.Adapters.ActiveAdapters);
        (_, errors) = Run("Set-LoraAdapter $amSet -Disable -Enable");
        Assert.Contains("AmbiguousParameterSet", Assert.Single(errors).FullyQualifiedErrorId);
    }

    [Fact]
    public void RemoveDeletesAdaptersAndSupportsWhatIfAndThePipeline()
    {
        var output = RunClean(
            "$amRm = Import-LoraModel; $c = New-LoraConfig -Rank 2; 'default', 'trial1', 'trial2', 'keep' | ForEach-Object { Add-LoraAdapter $amRm $c -Name $_ | Out-Null }; " +
            "Remove-LoraAdapter $amRm -Name keep -WhatIf; (Get-LoraAdapter $amRm).Count; " +
            "Get-LoraAdapter $amRm -Name 'trial*' | Remove-LoraAdapter; (Get-LoraAdapter $amRm).Name; " +
            "Remove-LoraAdapter $amRm default; (Get-LoraAdapter $amRm).Name; (Get-LoraAdapter $amRm).IsActive");
        Assert.Equal(new object[] { 4, "default", "keep", "keep", true }, output.Select(o => o.BaseObject));
        var (_, errors) = Run("Remove-LoraAdapter $amRm -Name default");
        Assert.StartsWith("AdapterNotFound,", Assert.Single(errors).FullyQualifiedErrorId);
    }

    [Fact]
    public void JoinAddsAnExactCatCombinationAndChecksWeights()
    {
        RunClean("$amJoin = Import-LoraModel; $c = New-LoraConfig -Rank 2 -TargetModules q_proj, v_proj; Add-LoraAdapter $amJoin $c | Out-Null; Add-LoraAdapter $amJoin $c -Name b | Out-Null");
        var model = Model("amJoin");
        Perturb(model, "default", 3);
        Perturb(model, "b", 4);
        var state = (LoraAdapterState)RunClean("Join-LoraAdapter $amJoin -Name default, b -Weight 0.7, 0.3 -NewName mix -Combination Cat").Single().BaseObject;
        Assert.Equal(("mix", 4, 4.0, false), (state.Name, state.Rank, state.Alpha, state.IsActive));

        var layer = model.Adapters.LoraLayers.Values.First();
        using (var scope = NewDisposeScope())
        {
            var expected = 0.7 * layer.DeltaWeight("default") + 0.3 * layer.DeltaWeight("b");
            Assert.True(layer.DeltaWeight("mix").allclose(expected, rtol: 1e-4, atol: 1e-5));
        }

        var svd = (LoraAdapterState)RunClean("Join-LoraAdapter $amJoin default, b -Weight 1, -1 -NewName small -SvdRank 1").Single().BaseObject;
        Assert.Equal(1, svd.Rank);

        var (_, errors) = Run("Join-LoraAdapter $amJoin -Name default, b -Weight 1 -NewName bad");
        var error = Assert.Single(errors);
        Assert.StartsWith("InvalidArgument,", error.FullyQualifiedErrorId);
        Assert.Contains("one weight per adapter", error.Exception.Message);
        (_, errors) = Run("Join-LoraAdapter $amJoin -Name default, nope -Weight 1, 1 -NewName bad");
        Assert.StartsWith("AdapterNotFound,", Assert.Single(errors).FullyQualifiedErrorId);
    }

    // ---- Save / Import ----------------------------------------------------------------------------------

    static IReadOnlyList<string> SafetensorsKeys(string file)
    {
        using var stream = File.OpenRead(file);
        var lengthBytes = new byte[8];
        stream.ReadExactly(lengthBytes);
        var header = new byte[BitConverter.ToInt64(lengthBytes)];
        stream.ReadExactly(header);
        using var json = JsonDocument.Parse(header);
        return json.RootElement.EnumerateObject().Select(p => p.Name).Where(n => n != "__metadata__").Order(StringComparer.Ordinal).ToList();
    }

    [Fact]
    public void SaveWritesAPeftFolderAndImportRoundTripsIt()
    {
        var folder = Path.Combine(_temp, "saved");
        RunClean("$amSave = Import-LoraModel; New-LoraConfig -Rank 4 -TargetModules q_proj, v_proj | Add-LoraAdapter -Model $amSave -Seed 3 | Out-Null");
        var source = Model("amSave");
        Perturb(source, "default", 5);

        var result = (LoraAdapterSaveResult)RunClean($"Save-LoraAdapter -Model $amSave -Path '{folder}' -PassThru").Single().BaseObject;
        Assert.Equal(folder, result.Path);
        Assert.Equal(new[] { "adapter_config.json", "adapter_model.safetensors" }, Directory.GetFiles(folder).Select(Path.GetFileName).Order());
        var keys = SafetensorsKeys(Path.Combine(folder, "adapter_model.safetensors"));
        Assert.Equal(source.Layers * 4, keys.Count);
        Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", keys);
        Assert.Contains("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", keys);
        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "adapter_config.json"))))
        {
            Assert.Equal(4, config.RootElement.GetProperty("r").GetInt32());
            Assert.Equal("LORA", config.RootElement.GetProperty("peft_type").GetString());
        }

        var imported = (LoraAdapterState)RunClean($"$amLoad = Import-LoraModel; Import-LoraAdapter -Model $amLoad -Path '{folder}'").Single().BaseObject;
        Assert.Equal(("default", 4, true, false), (imported.Name, imported.Rank, imported.IsActive, imported.IsTrainable));
        var target = Model("amLoad");
        Assert.Equal(Logits(source), Logits(target));
        Assert.Equal(Greedy(source), Greedy(target));
        Assert.NotEqual(Greedy(source), RunClean("$amBase = Import-LoraModel; $amBase").Select(o => Greedy((LoraModel)o.BaseObject)).Single());

        // Folders from the pipeline bind by PSPath; -Trainable loads for training.
        var second = (LoraAdapterState)RunClean($"[System.IO.DirectoryInfo]::new('{folder}') | Import-LoraAdapter -Model $amLoad -Name again -Trainable").Single().BaseObject;
        Assert.Equal(("again", false, true), (second.Name, second.IsActive, second.IsTrainable));
    }

    [Fact]
    public void SaveRefusesAnExistingAdapterWithoutForceAndLeavesItUnchanged()
    {
        var folder = Path.Combine(_temp, "existing");
        RunClean($"$amExist = Import-LoraModel; New-LoraConfig -Rank 2 | Add-LoraAdapter -Model $amExist | Out-Null; Save-LoraAdapter $amExist '{folder}'");
        var weights = Path.Combine(folder, "adapter_model.safetensors");
        var before = File.ReadAllBytes(weights);
        var stamp = File.GetLastWriteTimeUtc(weights);
        Perturb(Model("amExist"), "default", 9);

        var (_, errors) = Run($"Save-LoraAdapter $amExist '{folder}'");
        var error = Assert.Single(errors);
        Assert.StartsWith("AdapterExists,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ResourceExists, error.CategoryInfo.Category);
        Assert.Contains("-Force", error.Exception.Message);
        Assert.Equal(before, File.ReadAllBytes(weights));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(weights));

        RunClean($"Save-LoraAdapter $amExist '{folder}' -Force");
        Assert.NotEqual(before, File.ReadAllBytes(weights));
    }

    [Fact]
    public void SaveWithWhatIfWritesNothingAndNamedAdaptersGoIntoSubfolders()
    {
        var folder = Path.Combine(_temp, "whatif");
        RunClean($"$amWhatIf = Import-LoraModel; $c = New-LoraConfig -Rank 2; Add-LoraAdapter $amWhatIf $c | Out-Null; Add-LoraAdapter $amWhatIf $c -Name other | Out-Null; Save-LoraAdapter $amWhatIf '{folder}' -Name default, other -WhatIf");
        Assert.False(Directory.Exists(folder));
        RunClean($"Save-LoraAdapter $amWhatIf '{folder}' -Name other");
        Assert.True(File.Exists(Path.Combine(folder, "other", "adapter_config.json")));
        Assert.False(File.Exists(Path.Combine(folder, "adapter_config.json")));
    }

    [Fact]
    public void ImportOfAPickleOnlyFolderSaysConvertToSafetensors()
    {
        var folder = Path.Combine(_temp, "pickle");
        RunClean($"$amPickle = Import-LoraModel; New-LoraConfig -Rank 2 | Add-LoraAdapter -Model $amPickle | Out-Null; Save-LoraAdapter $amPickle '{folder}'; Remove-LoraAdapter $amPickle default");
        File.Move(Path.Combine(folder, "adapter_model.safetensors"), Path.Combine(folder, "adapter_model.bin"));
        var (_, errors) = Run($"Import-LoraAdapter -Model $amPickle -LiteralPath '{folder}'");
        var error = Assert.Single(errors);
        Assert.Contains("safetensors", error.Exception.Message);
        Assert.Empty(Model("amPickle").Adapters.Names);

        (_, errors) = Run($"Import-LoraAdapter -Model $amPickle -Path '{Path.Combine(_temp, "nothing")}'");
        Assert.StartsWith("PathNotFound,", Assert.Single(errors).FullyQualifiedErrorId);
    }

    // ---- Merge ------------------------------------------------------------------------------------------

    [Fact]
    public void MergeToAFolderGivesAModelThatGeneratesTheSameText()
    {
        var folder = Path.Combine(_temp, "merged");
        RunClean("$amMerge = Import-LoraModel; New-LoraConfig -Rank 4 -TargetModules all-linear | Add-LoraAdapter -Model $amMerge -Seed 2 | Out-Null");
        var model = Model("amMerge");
        Perturb(model, "default", 11);

        var result = (LoraMergeResult)RunClean($"Merge-LoraAdapter -Model $amMerge -Path '{folder}'").Single().BaseObject;
        Assert.Equal(folder, result.Path);
        Assert.Equal(new[] { "default" }, result.MergedAdapters);
        Assert.Contains("model.safetensors", result.Files);
        Assert.Contains("config.json", result.Files);
        Assert.Contains("tokenizer.model", result.Files);
        Assert.False(model.Adapters.IsMerged);

        var merged = (LoraModel)RunClean($"$amMerged = Import-LoraModel '{folder}'; $amMerged").Single().BaseObject;
        Assert.Equal(Greedy(model), Greedy(merged));
        var a = Logits(model);
        var b = Logits(merged);
        Assert.All(a.Zip(b), p => Assert.True(Math.Abs(p.First - p.Second) < 1e-3, $"{p.First} vs {p.Second}"));

        // A non-empty folder is refused without -Force and left as it was; -WhatIf writes nothing.
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors"));
        var (_, errors) = Run($"Merge-LoraAdapter -Model $amMerge -Path '{folder}'");
        var error = Assert.Single(errors);
        Assert.StartsWith("FolderNotEmpty,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ResourceExists, error.CategoryInfo.Category);
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors")));
        RunClean($"Merge-LoraAdapter -Model $amMerge -Path '{Path.Combine(_temp, "merged-whatif")}' -WhatIf");
        Assert.False(Directory.Exists(Path.Combine(_temp, "merged-whatif")));
        RunClean($"Merge-LoraAdapter -Model $amMerge -Path '{folder}' -Force");
    }

    [Fact]
    public void MergeInPlaceAndUnmergeRestoreTheWeights()
    {
        RunClean("$amInPlace = Import-LoraModel; New-LoraConfig -Rank 4 -TargetModules all-linear | Add-LoraAdapter -Model $amInPlace -Seed 2 | Out-Null");
        var model = Model("amInPlace");
        Perturb(model, "default", 12);
        var layer = model.Adapters.LoraLayers.Values.First();
        var baseBefore = layer.BaseLayer.weight!.data<float>().ToArray();
        var logits = Logits(model);
        var text = Greedy(model);

        var passed = RunClean("Merge-LoraAdapter -Model $amInPlace -InPlace -PassThru").Single().BaseObject;
        Assert.Same(model, passed);
        Assert.True(model.Adapters.IsMerged);
        Assert.True(((LoraAdapterState)RunClean("Get-LoraAdapter $amInPlace").Single().BaseObject).IsMerged);
        Assert.NotEqual(baseBefore, layer.BaseLayer.weight!.data<float>().ToArray());
        Assert.Equal(text, Greedy(model));
        Assert.All(logits.Zip(Logits(model)), p => Assert.True(Math.Abs(p.First - p.Second) < 1e-3));

        var (_, errors) = Run("New-LoraConfig | Add-LoraAdapter -Model $amInPlace -Name late");
        Assert.StartsWith("InvalidOperation,", Assert.Single(errors).FullyQualifiedErrorId);

        Assert.Empty(RunClean("Merge-LoraAdapter -Model $amInPlace -Unmerge"));
        Assert.False(model.Adapters.IsMerged);
        var baseAfter = layer.BaseLayer.weight!.data<float>().ToArray();
        Assert.All(baseBefore.Zip(baseAfter), p => Assert.True(Math.Abs(p.First - p.Second) < 1e-5));
        Assert.Equal(text, Greedy(model));
    }

    [Fact]
    public void MergeWithoutAnActiveAdapterIsAnInvalidOperation()
    {
        var (_, errors) = Run($"$amEmpty = Import-LoraModel; Merge-LoraAdapter -Model $amEmpty -Path '{Path.Combine(_temp, "none")}'");
        Assert.StartsWith("InvalidOperation,", Assert.Single(errors).FullyQualifiedErrorId);
        Assert.False(Directory.Exists(Path.Combine(_temp, "none")));
    }
}
