//! The MediaLive channel's encoder: the preset's H.264 ladder and AAC, into
//! MediaPackage v1 (HLS ingest) or v2 (CMAF ingest, for low-latency HLS).

use aws_sdk_medialive::types as ml;

use crate::Preset;
use crate::preset::Packaging;

/// The channel's encoder: the preset's H.264 ladder and AAC, one MediaPackage output
/// group, input loss shown as black or a slate, ID3 passed through.
pub(crate) fn encoder_settings(preset: &Preset, cfg: &crate::AwsConfig) -> ml::EncoderSettings {
    let mut video = Vec::new();
    let mut outputs = Vec::new();
    for r in &preset.ladder {
        let h264 = ml::H264Settings::builder()
            .rate_control_mode(ml::H264RateControlMode::Cbr)
            .bitrate(r.bitrate)
            .buf_size(r.bitrate * 2)
            .profile(ml::H264Profile::from(r.profile))
            .level(ml::H264Level::from(r.level))
            .framerate_control(ml::H264FramerateControl::Specified)
            .framerate_numerator(preset.fps)
            .framerate_denominator(1)
            .gop_size(preset.gop_seconds)
            .gop_size_units(ml::H264GopSizeUnits::Seconds)
            .gop_closed_cadence(1)
            .gop_num_b_frames(2)
            .scene_change_detect(ml::H264SceneChangeDetect::Enabled)
            .par_control(ml::H264ParControl::Specified)
            .par_numerator(1)
            .par_denominator(1)
            .adaptive_quantization(ml::H264AdaptiveQuantization::Auto)
            .timecode_insertion(ml::H264TimecodeInsertionBehavior::Disabled)
            .build();
        video.push(
            ml::VideoDescription::builder()
                .name(r.name)
                .width(r.width)
                .height(r.height)
                .scaling_behavior(ml::VideoDescriptionScalingBehavior::Default)
                .respond_to_afd(ml::VideoDescriptionRespondToAfd::None)
                .sharpness(50)
                .codec_settings(ml::VideoCodecSettings::builder().h264_settings(h264).build())
                .build(),
        );
        let output = ml::Output::builder().output_name(r.name.trim_start_matches("video_")).video_description_name(r.name);
        outputs.push(match preset.packaging {
            // HLS ingest: each rendition muxed with the audio.
            Packaging::HlsV1 => output
                .audio_description_names("audio_aac")
                .output_settings(ml::OutputSettings::builder().media_package_output_settings(ml::MediaPackageOutputSettings::builder().build()).build())
                .build(),
            // CMAF ingest: one track per output; the video renditions name the audio
            // rendition group they play with.
            Packaging::LowLatencyHlsV2 => output.output_settings(v2_output(|d| d.audio_rendition_sets(AUDIO_GROUP))).build(),
        });
    }
    if preset.packaging == Packaging::LowLatencyHlsV2 {
        outputs.push(
            ml::Output::builder()
                .output_name("audio")
                .audio_description_names("audio_aac")
                .output_settings(v2_output(|d| d.audio_group_id(AUDIO_GROUP).hls_default(ml::HlsDefault::Yes).hls_auto_select(ml::HlsAutoSelect::Yes)))
                .build(),
        );
    }
    let audio = ml::AudioDescription::builder()
        .name("audio_aac")
        .audio_selector_name("default")
        .audio_type_control(ml::AudioDescriptionAudioTypeControl::FollowInput)
        .language_code_control(ml::AudioDescriptionLanguageCodeControl::FollowInput)
        .codec_settings(
            ml::AudioCodecSettings::builder()
                .aac_settings(
                    ml::AacSettings::builder()
                        .bitrate(preset.audio_bitrate)
                        .coding_mode(ml::AacCodingMode::CodingMode20)
                        .input_type(ml::AacInputType::Normal)
                        .profile(ml::AacProfile::Lc)
                        .rate_control_mode(ml::AacRateControlMode::Cbr)
                        .raw_format(ml::AacRawFormat::None)
                        .sample_rate(48_000.0)
                        .spec(ml::AacSpec::Mpeg4)
                        .build(),
                )
                .build(),
        )
        .build();
    let mut loss = ml::InputLossBehavior::builder().black_frame_msec(10_000).repeat_frame_msec(1_000);
    loss = match (&cfg.slate_url, cfg.input_loss.as_str()) {
        (Some(url), "slate") => loss
            .input_loss_image_type(ml::InputLossImageType::Slate)
            .input_loss_image_slate(ml::InputLocation::builder().uri(url).build()),
        _ => loss.input_loss_image_type(ml::InputLossImageType::Color).input_loss_image_color("000000"),
    };
    let mut group = ml::MediaPackageGroupSettings::builder().destination(ml::OutputLocationRef::builder().destination_ref_id("mediapackage").build());
    if preset.packaging == Packaging::LowLatencyHlsV2 {
        // CMAF segments of the preset's length (whole GOPs), with the schedule's ID3
        // (timed metadata) carried in them.
        group = group.mediapackage_v2_group_settings(
            ml::MediaPackageV2GroupSettings::builder()
                .segment_length(preset.segment_seconds)
                .segment_length_units(ml::CmafIngestSegmentLengthUnits::Seconds)
                .id3_behavior(ml::CmafId3Behavior::Enabled)
                .timed_metadata_passthrough(ml::CmafTimedMetadataPassthrough::Enabled)
                .scte35_type(ml::Scte35Type::None)
                .build(),
        );
    }
    let group = group.build();
    ml::EncoderSettings::builder()
        .set_video_descriptions(Some(video))
        .audio_descriptions(audio)
        .output_groups(
            ml::OutputGroup::builder()
                .name("mediapackage")
                .output_group_settings(
                    ml::OutputGroupSettings::builder()
                        .media_package_group_settings(group)
                        .build(),
                )
                .set_outputs(Some(outputs))
                .build(),
        )
        .timecode_config(ml::TimecodeConfig::builder().source(ml::TimecodeConfigSource::Systemclock).build())
        .global_configuration(
            ml::GlobalConfiguration::builder()
                .input_loss_behavior(loss.build())
                .input_end_action(ml::GlobalConfigurationInputEndAction::None)
                .output_timing_source(ml::GlobalConfigurationOutputTimingSource::SystemClock)
                .support_low_framerate_inputs(ml::GlobalConfigurationLowFramerateInputs::Disabled)
                .build(),
        )
        .build()
}


/// The audio rendition group of a CMAF ingest (the program's one AAC track).
const AUDIO_GROUP: &str = "program_audio";

/// A MediaPackage v2 output's settings.
fn v2_output(f: impl FnOnce(ml::builders::MediaPackageV2DestinationSettingsBuilder) -> ml::builders::MediaPackageV2DestinationSettingsBuilder) -> ml::OutputSettings {
    let destination = f(ml::MediaPackageV2DestinationSettings::builder()).build();
    ml::OutputSettings::builder()
        .media_package_output_settings(ml::MediaPackageOutputSettings::builder().media_package_v2_destination_settings(destination).build())
        .build()
}
