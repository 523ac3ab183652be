using System.Management.Automation;
using LoraPS.Models;
using LoraPS.Module.Adapters;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Merges the active LoRA adapters into the base weights: into a new checkpoint folder, or in memory.</summary>
/// <remarks>
/// <para>
/// With -Path, Merge-LoraAdapter writes a standard Hugging Face checkpoint (PEFT merge_and_unload + save_pretrained):
/// model.safetensors with the original key names and the active adapters folded in, config.json, and the tokenizer
/// and generation files of the base model's folder. Import-LoraModel, transformers and llama.cpp load it as an
/// ordinary model. The model in memory keeps its adapters unmerged. A folder that is not empty is refused with a
/// FolderNotEmpty error unless -Force is given, which replaces its content.
/// </para>
/// <para>
/// -InPlace folds the active adapters into the model's weights in memory for faster inference; -Unmerge takes them
/// out again. While merged, adapters cannot be added, switched or removed.
/// </para>
/// <para>
/// On a quantized model (Import-LoraModel -Quantize) -Path dequantizes the base weights, folds the adapters in and
/// writes a full-precision (unquantized) checkpoint, with a warning and the result's DequantizedFrom property saying so;
/// -InPlace is refused, because merging into 4-bit weights would re-quantize them and lose the adapters' precision.
/// </para>
/// </remarks>
/// <example>Export a merged model
/// <code>Merge-LoraAdapter -Model $model -Path ./stories-merged
/// $merged = Import-LoraModel ./stories-merged</code>
/// <para>The merged checkpoint generates the same text as the model with its adapter active.</para>
/// </example>
/// <example>Merge for inference and undo
/// <code>Merge-LoraAdapter -Model $model -InPlace
/// Invoke-LoraGenerate -Model $model -Prompt 'Once'
/// Merge-LoraAdapter -Model $model -Unmerge</code>
/// <para>Generation runs on plain linear layers while merged.</para>
/// </example>
[Cmdlet(VerbsData.Merge, "LoraAdapter", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(LoraMergeResult), ParameterSetName = [PathSet])]
[OutputType(typeof(LoraModel), ParameterSetName = [InPlaceSet, UnmergeSet])]
public sealed class MergeLoraAdapterCommand : AdapterCmdlet
{
    const string PathSet = "Path", InPlaceSet = "InPlace", UnmergeSet = "Unmerge";

    /// <summary>The model from Import-LoraModel, with at least one active adapter.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The folder to write the merged checkpoint into; created if needed.</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = PathSet)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>Replace the content of a folder that is not empty.</summary>
    [Parameter(ParameterSetName = PathSet)]
    public SwitchParameter Force { get; set; }

    /// <summary>Merge the active adapters into the weights in memory.</summary>
    [Parameter(Mandatory = true, ParameterSetName = InPlaceSet)]
    public SwitchParameter InPlace { get; set; }

    /// <summary>With -InPlace: check every merged weight for NaN and infinity first; on failure nothing is merged.</summary>
    [Parameter(ParameterSetName = InPlaceSet)]
    public SwitchParameter SafeMerge { get; set; }

    /// <summary>Take merged adapters out of the weights again.</summary>
    [Parameter(Mandatory = true, ParameterSetName = UnmergeSet)]
    public SwitchParameter Unmerge { get; set; }

    /// <summary>With -InPlace or -Unmerge: write the model afterwards.</summary>
    [Parameter(ParameterSetName = InPlaceSet)]
    [Parameter(ParameterSetName = UnmergeSet)]
    public SwitchParameter PassThru { get; set; }

    protected override void EndProcessing()
    {
        switch (ParameterSetName)
        {
            case InPlaceSet:
                if (!ShouldProcess(Model.ToString(), "Merge the active LoRA adapters into the weights in memory")) return;
                var merged = RunEngine(_ => Model.Adapters.MergeInPlace(SafeMerge), Model);
                WriteVerbose($"Merged {string.Join(", ", merged)} into the weights of {Model.Name}.");
                break;
            case UnmergeSet:
                if (!ShouldProcess(Model.ToString(), "Unmerge the LoRA adapters from the weights")) return;
                RunEngine(_ => Model.Adapters.Unmerge(), Model);
                break;
            default:
                MergeToFolder();
                return;
        }
        if (PassThru) WriteObject(Model);
    }

    void MergeToFolder()
    {
        var folder = GetUnresolvedFileSystemPath(Path);
        if (!Force && Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any())
            ThrowTerminating(ErrorIds.FolderNotEmpty, ErrorCategory.ResourceExists,
                $"The folder '{folder}' is not empty; pass -Force to replace its content with the merged model, or choose another -Path.", folder);
        if (File.Exists(folder))
            ThrowTerminating(ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument, $"'{folder}' is a file; give a folder for the merged checkpoint.", folder);
        if (!ShouldProcess(folder, $"Write {Model.Name} with adapters {string.Join(", ", Model.Adapters.ActiveAdapters)} merged as a Hugging Face checkpoint")) return;
        var adapters = Model.Adapters.ActiveAdapters.ToList();
        var quantized = Model.Quantization;
        var written = RunEngine(_ => Model.Adapters.MergeAndSave(folder, Force), folder);
        var files = Directory.EnumerateFiles(written).Select(f => System.IO.Path.GetFileName(f)).Order(StringComparer.Ordinal).ToList();
        var dtype = Model.Network.DType.ToString().ToLowerInvariant();
        if (quantized is not null)
            WriteWarning($"The base model is quantized ({quantized.Format}): its weights were dequantized and the merged checkpoint in '{written}' holds them unquantized in {dtype}. Import it with -Quantize {quantized.Format} to quantize it again.");
        WriteObject(new LoraMergeResult(written, adapters, files, quantized?.Format, dtype));
    }
}
