using System.Management.Automation;
using LoraPS.Models;
using LoraPS.Module.Adapters;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>Import-LoraModel -Quantize and merging a quantized model through a real runspace.</summary>
[Collection(ModuleCollection.Name)]
public sealed class QloraCmdletTests(RunspaceFixture fixture) : IDisposable
{
    readonly string _temp = Directory.CreateTempSubdirectory("loraps-qlora-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Fact]
    public void QuantizeLoadsTheBlocksIn4BitsAndReportsBitsPerParameter()
    {
        var (output, errors) = fixture.Invoke("$q = Import-LoraModel -Quantize nf4-dq; $q; $q.QuantizationFormat; $q.BaseBitsPerParameter; Remove-LoraModel $q");
        Assert.Empty(errors);
        var model = Assert.IsType<LoraModel>(output[0].BaseObject);
        Assert.Equal("nf4-dq", output[1].BaseObject);
        Assert.InRange((double)output[2].BaseObject, 4.1, 4.2);
        Assert.Equal(260_032, model.Parameters);
    }

    [Fact]
    public void AnUnknownQuantizationTypeListsTheValidOnes()
    {
        var (output, errors) = fixture.Invoke("Import-LoraModel -Quantize nf3");
        Assert.Empty(output);
        var error = Assert.Single(errors);
        Assert.StartsWith("UnknownQuantizationType,", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Contains("nf4, nf4-dq, fp4, fp4-dq, int8", error.Exception.Message);
    }

    [Fact]
    public void QuantizingAnAlreadyQuantizedCheckpointIsRefused()
    {
        // A bitsandbytes-style checkpoint: the stories260K files plus one serialized 4-bit weight's absmax.
        var folder = Path.Combine(_temp, "bnb");
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(Path.Combine(ModuleAssemblies.RepoRoot, "models", "stories260K")))
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        using (var scope = TorchSharp.torch.NewDisposeScope())
        {
            var tensors = new List<KeyValuePair<string, TorchSharp.torch.Tensor>>();
            using (var source = LoraPS.Checkpoints.SafetensorsFile.Open(Path.Combine(folder, "model.safetensors")))
                foreach (var e in source.Entries) tensors.Add(new(e.Name, source.ReadTensor(e.Name)));
            tensors.Add(new("model.layers.0.mlp.down_proj.weight.absmax", TorchSharp.torch.ones(172)));
            LoraPS.Checkpoints.SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors);
        }
        var (_, errors) = fixture.Invoke($"Import-LoraModel -LiteralPath '{folder}' -Quantize nf4");
        var error = Assert.Single(errors);
        Assert.StartsWith("AlreadyQuantized,", error.FullyQualifiedErrorId);
        Assert.Contains("already quantized", error.Exception.Message);
    }

    [Fact]
    public void MergingAQuantizedModelSaysItWroteFullPrecisionAndRefusesInPlace()
    {
        var folder = Path.Combine(_temp, "merged");
        var (output, errors) = fixture.Invoke(
            "$qm = Import-LoraModel -Quantize nf4; New-LoraConfig -Rank 4 -TargetModules all-linear | Add-LoraAdapter -Model $qm -Seed 1 | Out-Null; " +
            $"Merge-LoraAdapter -Model $qm -Path '{folder}' 3>&1");
        Assert.Empty(errors);
        var warning = Assert.IsType<WarningRecord>(output[0].BaseObject);
        Assert.Contains("dequantized", warning.Message);
        var result = Assert.IsType<LoraMergeResult>(output[1].BaseObject);
        Assert.Equal("nf4", result.DequantizedFrom);
        Assert.Equal("float32", result.WeightDType);
        Assert.True(File.Exists(Path.Combine(folder, "model.safetensors")));

        // Over the now non-empty folder without -Force: the existing FolderNotEmpty error.
        var written = File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors"));
        (_, errors) = fixture.Invoke($"Merge-LoraAdapter -Model $qm -Path '{folder}'");
        var notEmpty = Assert.Single(errors);
        Assert.StartsWith("FolderNotEmpty,", notEmpty.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ResourceExists, notEmpty.CategoryInfo.Category);
        Assert.Contains("-Force", notEmpty.Exception.Message);
        Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors")));
        // With -Force the quantized model's merge replaces it.
        (output, errors) = fixture.Invoke($"Merge-LoraAdapter -Model $qm -Path '{folder}' -Force 3>$null");
        Assert.Empty(errors);
        Assert.Equal("nf4", Assert.IsType<LoraMergeResult>(Assert.Single(output).BaseObject).DequantizedFrom);

        (_, errors) = fixture.Invoke("Merge-LoraAdapter -Model $qm -InPlace; Remove-LoraModel $qm");
        var error = Assert.Single(errors);
        Assert.StartsWith("InvalidOperation,", error.FullyQualifiedErrorId);
        Assert.Contains("re-quantize", error.Exception.Message);
    }

    [Fact]
    public void FinetuningAQuantizedModelWithEightBitAdamRecordsBothInTheRun()
    {
        var run = Path.Combine(_temp, "run");
        var (output, errors) = fixture.Invoke(
            "$qf = Import-LoraModel -Quantize nf4-dq; New-LoraConfig -Rank 4 -TargetModules all-linear | Add-LoraAdapter -Model $qf -Seed 1 | Out-Null; " +
            "$qd = 1..8 | ForEach-Object { [pscustomobject]@{ instruction = \"Count to $_.\"; input = ''; output = \"One two $_.\" } } | Import-LoraDataset; " +
            $"Start-LoraFinetune -Model $qf -Dataset $qd -OutputPath '{run}' -MaxSteps 2 -BatchSize 4 -MicroBatchSize 4 -Optimizer AdamW8bit; Remove-LoraModel $qf");
        Assert.True(errors.Count == 0, string.Join("\n", errors.Select(e => $"{e.FullyQualifiedErrorId}: {e.Exception.Message}")));
        var manifest = File.ReadAllText(Path.Combine(run, "run.json"));
        Assert.Contains("\"nf4-dq\"", manifest);
        Assert.Contains("AdamW8bit", manifest);
    }
}
