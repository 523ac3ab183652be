using System.Management.Automation;
using LoraPS.Adapters;
using LoraPS.Models;
using LoraPS.Module.Adapters;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Saves a LoRA adapter as a PEFT adapter folder (adapter_config.json + adapter_model.safetensors).</summary>
/// <remarks>
/// <para>
/// Save-LoraAdapter writes the adapter in PEFT's save_pretrained layout, so PEFT's PeftModel.from_pretrained, vLLM,
/// llama.cpp's converter and Import-LoraAdapter all load it: adapter_config.json and adapter_model.safetensors with
/// PEFT's tensor names. As in PEFT, the adapter named default goes into -Path itself and any other adapter into a
/// subfolder named after it.
/// </para>
/// <para>
/// A folder that already holds an adapter is refused with an AdapterExists error unless -Force is given. Files are
/// written to a temporary folder and moved into place, so a failure leaves the old adapter intact. Other files in
/// the folder are left alone.
/// </para>
/// <para>
/// An adapter added by Initialize-LoraGA, or with a PiSSA or OLoRA init, rewrote the base weights of this session's
/// model. It is saved converted for the original model, as PEFT's path_initial_model_for_weight_conversion does:
/// rank 2r (the trained factors beside the negated initial ones) and alpha doubled (times sqrt 2 with rsLoRA), so it
/// applies to the untouched checkpoint. -NoConversion saves it as it is (rank r, only valid on the rewritten base).
/// </para>
/// </remarks>
/// <example>Save the default adapter
/// <code>Save-LoraAdapter -Model $model -Path ./adapters/stories-r8</code>
/// <para>Writes ./adapters/stories-r8/adapter_config.json and adapter_model.safetensors.</para>
/// </example>
/// <example>Save a LoRA-GA adapter for the original model and as it is
/// <code>Save-LoraAdapter -Model $model -Path ./adapters/loraga
/// Save-LoraAdapter -Model $model -Path ./adapters/loraga-raw -NoConversion</code>
/// <para>The first folder holds a rank-2r adapter for the unmodified checkpoint; the second the rank-r adapter for the rewritten weights.</para>
/// </example>
/// <example>Overwrite and show what was written
/// <code>Save-LoraAdapter -Model $model -Name qv -Path ./adapters -Force -PassThru</code>
/// <para>Saves the adapter qv into ./adapters/qv, replacing an earlier save, and returns the folder and files.</para>
/// </example>
[Cmdlet(VerbsData.Save, "LoraAdapter", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(LoraAdapterSaveResult))]
public sealed class SaveLoraAdapterCommand : AdapterCmdlet
{
    /// <summary>The model from Import-LoraModel.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The folder to save into; created if needed.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>The adapters to save.</summary>
    /// <value>Default: default.</value>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = ["default"];

    /// <summary>Overwrite an adapter already saved in the folder.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Save LoRA-GA, PiSSA and OLoRA adapters as they are (for the rewritten base) instead of converted for the original model.</summary>
    [Parameter]
    public SwitchParameter NoConversion { get; set; }

    /// <summary>Write a record of each folder and the files written.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void EndProcessing()
    {
        var root = GetUnresolvedFileSystemPath(Path);
        foreach (var name in ResolveAdapterNames(Model, Name))
        {
            var folder = LoraAdapterSet.AdapterFolder(root, name);
            if (!Force && LoraAdapterSet.HoldsAdapter(folder))
            {
                WriteError(ErrorIds.AdapterExists, ErrorCategory.ResourceExists,
                    $"'{folder}' already holds an adapter ({PeftAdapterConfig.FileName} or adapter weights); pass -Force to overwrite it, or choose another -Path.", folder);
                continue;
            }
            if (!ShouldProcess(folder, $"Save LoRA adapter '{name}'")) continue;
            var written = RunEngine(_ => Model.Adapters.Save(root, name, force: Force, unconverted: NoConversion), folder);
            if (PassThru)
                foreach (var f in written)
                    WriteObject(new LoraAdapterSaveResult(name, f, [PeftAdapterConfig.FileName, LoraAdapterSet.WeightsFileName]));
        }
    }
}
